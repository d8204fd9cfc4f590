"""The order bus client: pulls a date range of orders and the goods catalog into landing/.

    landing/orders/dt=YYYY-MM-DD/orders.jsonl    raw orders as the bus sent them, in order
    landing/orders/dt=YYYY-MM-DD/_manifest.json  orders, pages, sha256, bus totals (last)
    landing/goods/dt=YYYY-MM-DD/goods.jsonl      the catalog as of that day

How it survives a real bus:
* page 1 of every day first (it tells pageCount), then every other page of every day
  from one bounded thread pool, the last page included: the pool's workers take
  (day, page) jobs from one shared list, so each page is fetched by exactly one worker,
  and the first failure stops the others taking new pages;
* 429 (honouring Retry-After), 5xx and connection failures are retried with exponential
  backoff by urllib3's Retry; dropped connections and truncated or malformed bodies by
  tenacity, with jitter; timeouts on every request; proxy and CA bundle settings from
  the environment are read once, when the client is made, not on every request;
* each finished page is checkpointed in `dt=D/_parts/` (temp file + rename): a run killed
  half-way resumes with the pages it lacks, and no page lands twice; a day is assembled
  into orders.jsonl, then its manifest is written last: a day with a manifest is complete
  and is not fetched again unless `refetch=True`.

Run with: shoprecs extract --date 2024-01-30   (or --from 2024-01-01 --to 2024-01-30)
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from pydantic_core import to_json
from requests.adapters import HTTPAdapter
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from urllib3.util.retry import Retry

from core.bus_profile import BusProfile
from core.errors import BusProfileError, BusUnavailable
from core.files import atomic_write
from etl._progress import Progress

log = logging.getLogger(__name__)


class BusError(BusUnavailable):
    """The bus could not be read after retries, or refused the credentials; the message
    says which request failed and what to check (exit code 4)."""


class _BadBody(Exception):
    """A response that ended early or is not the JSON page we asked for: worth a retry."""


_TRANSIENT = (_BadBody, requests.ConnectionError, requests.Timeout,
              requests.exceptions.ChunkedEncodingError)


class BusClient:
    """A pooled, retrying HTTP client for the order bus (thread-safe for GETs)."""

    def __init__(self, url: str, user: str, password: str, *, per_page: int = 100,
                 workers: int = 8, timeout: float = 30.0, retries: int = 5,
                 profile: BusProfile = BusProfile()):
        self.url = url.rstrip("/")
        self.profile = profile
        self.scrub = None  # orders -> None, in place: privacy/'s scrub, when set
        self.per_page = per_page
        self.workers = workers
        self.timeout = timeout
        self.retries = retries
        retry = Retry(total=retries, backoff_factor=0.2, backoff_jitter=0.2, backoff_max=30,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods={"GET"},
                      respect_retry_after_header=True, raise_on_status=False)
        self.session = requests.Session()
        self.session.auth = (user, password)
        # Proxies and the CA bundle from the environment (HTTPS_PROXY, NO_PROXY,
        # REQUESTS_CA_BUNDLE...) are resolved once, here: with trust_env on, requests
        # re-reads the whole environment and stats the bundle path on every request.
        env = self.session.merge_environment_settings(self.url, {}, None, None, None)
        self.session.proxies = env["proxies"]
        if self.url.startswith("https:"):
            self.session.verify = env["verify"]
        self.session.trust_env = False
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=workers)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # One retry controller for every page and thread: tenacity keeps the state of a
        # call in the call itself and its statistics in thread-locals.
        self._retrying = Retrying(stop=stop_after_attempt(retries + 1),
                                  wait=wait_exponential_jitter(initial=0.1, max=10, jitter=0.2),
                                  retry=retry_if_exception_type(_TRANSIENT), reraise=True,
                                  before_sleep=before_sleep_log(log, logging.WARNING))

    @classmethod
    def from_settings(cls, bus) -> BusClient:
        """The client of the [bus] section."""
        return cls(bus.url, bus.user, bus.password, per_page=bus.per_page,
                   workers=bus.workers, timeout=bus.timeout, retries=bus.retries,
                   profile=BusProfile.from_settings(bus))

    def _get_once(self, path: str, params: dict, key: str) -> dict:
        resp = self.session.get(self.url + path, params=params, timeout=self.timeout)
        if resp.status_code in (401, 403):
            raise BusError(f"the bus at {self.url} refused the credentials (HTTP "
                           f"{resp.status_code} on GET {path}): check bus.user and "
                           "SHOPRECS_BUS_PASSWORD")
        if resp.status_code == 404:
            raise BusProfileError(f"the bus at {self.url} has no {path} (HTTP 404): check "
                                  "bus.url and bus.orders_path / bus.goods_path")
        if resp.status_code >= 400:
            raise BusError(f"GET {self.url}{path} {params}: HTTP {resp.status_code} after "
                           f"{self.retries} retries: {resp.text[:200]}; is the bus up?")
        try:  # from the bytes: UTF-8/16/32 detected as resp.json() does, one copy fewer
            body = json.loads(resp.content)
        except ValueError as exc:  # UnicodeDecodeError included
            raise _BadBody(f"GET {path} {params}: body is not JSON ({exc})") from exc
        if not isinstance(body, dict):
            raise _BadBody(f"GET {path} {params}: the body is not a JSON object")
        count = self.profile.page_count_key
        for name, kind, setting in ((key, list, "orders_key" if path ==
                                     self.profile.orders_path else "goods_key"),
                                    (count, int, "page_count_key")):
            if not isinstance(body.get(name), kind):
                found = ", ".join(sorted(body)[:12]) or "nothing"
                raise BusProfileError(
                    f"the bus's {path} answer has no {name!r} {kind.__name__} (it has: "
                    f"{found}): set bus.{setting} to the name it uses")
        return body

    def get_page(self, path: str, key: str, page: int, **params) -> dict:
        """One page of `path`, retried until it arrives whole (or BusError)."""
        params = {**params, **self.profile.paging(page, self.per_page)}
        try:
            return self._retrying(self._get_once, path, params, key)
        except _TRANSIENT as exc:
            reason = "cannot connect" if isinstance(exc, requests.ConnectionError) else exc
            raise BusError(f"the bus at {self.url} is unreachable: GET {path} failed after "
                           f"{self.retries + 1} attempts ({reason}); check bus.url and that "
                           "the bus is up") from exc

    def orders_page(self, page: int, **params) -> dict:
        p = self.profile
        return self.get_page(p.orders_path, p.orders_key, page, **p.expand_params, **params)

    def page_count(self, body: dict) -> int:
        return body[self.profile.page_count_key]

    def orders(self, body: dict) -> list[dict]:
        orders = body[self.profile.orders_key]
        if self.scrub is not None:  # forgotten shoppers' phones never land again
            self.scrub(orders)
        return orders


def _jsonl(records: list[dict]) -> bytes:
    """One compact JSON record per line, UTF-8, as json.dumps(r, ensure_ascii=False,
    separators=(",", ":")) writes it, by pydantic-core's serializer (twice as fast)."""
    return b"".join([to_json(r, inf_nan_mode="constants") + b"\n" for r in records])


class _Day:
    """One day's orders being landed: its checkpoint folder and page count."""

    def __init__(self, root: Path, day: dt.date, per_page: int, page_count: int = 0):
        self.day = day
        self.dir = root / "landing" / "orders" / f"dt={day.isoformat()}"
        self.parts = self.dir / "_parts"
        self.per_page = per_page
        self.page_count = page_count

    @property
    def complete(self) -> bool:
        return (self.dir / "_manifest.json").exists()

    def manifest(self) -> dict:
        return json.loads((self.dir / "_manifest.json").read_text())

    def part(self, page: int) -> Path:
        return self.parts / f"page-{page:06d}.jsonl"

    def start(self, page_count: int, orders: list[dict]) -> None:
        """Record page 1; a checkpoint made with another page count or size is discarded."""
        meta = {"pageCount": page_count, "perPage": self.per_page}
        meta_path = self.parts / "_meta.json"
        if meta_path.exists() and json.loads(meta_path.read_text()) != meta:
            log.warning("%s: the bus changed since the checkpoint; fetching the day again",
                        self.day)
            shutil.rmtree(self.parts)
        atomic_write(meta_path, json.dumps(meta))
        self.page_count = page_count
        self.save(1, orders)

    def save(self, page: int, orders: list[dict]) -> None:
        """Checkpoint one page (`start` made the folder)."""
        atomic_write(self.part(page), _jsonl(orders))

    def missing(self) -> list[int]:
        have = set(os.listdir(self.parts))
        return [p for p in range(2, self.page_count + 1) if self.part(p).name not in have]

    def land(self, chunks: Iterable[bytes], pages: int, extra: dict | None = None) -> dict:
        """Write `chunks` (whole lines) into orders.jsonl, then the manifest last: its
        orders, pages and sha256, and `extra` (default: the bus's page count and size)."""
        digest, orders = hashlib.sha256(), 0

        def counted() -> Iterator[bytes]:
            nonlocal orders
            for data in chunks:
                digest.update(data)
                orders += data.count(b"\n")
                yield data

        atomic_write(self.dir / "orders.jsonl", counted())
        manifest = {"dt": self.day.isoformat(), "orders": orders, "pages": pages,
                    "perPage": self.per_page, "sha256": digest.hexdigest(),
                    **(extra or {"bus": {"pageCount": self.page_count,
                                         "maxOrders": self.page_count * self.per_page}})}
        atomic_write(self.dir / "_manifest.json", json.dumps(manifest, indent=1))
        return manifest

    def finish(self, pages: list[int] | None = None, extra: dict | None = None) -> dict:
        """Land the saved `pages` (default: every page of the day's listing) in order, then
        drop the checkpoints."""
        pages = pages if pages is not None else list(range(1, self.page_count + 1))
        manifest = self.land((self.part(page).read_bytes() for page in pages), len(pages), extra)
        shutil.rmtree(self.parts)
        return manifest


def land_day(root: Path, day: dt.date, jsonl: bytes) -> dict:
    """Land one day of orders that did not come over the bus (the data scaler's), in the
    layout `extract` leaves: one page of all the day's orders."""
    return _Day(root, day, per_page=jsonl.count(b"\n"), page_count=1).land([jsonl], pages=1)


def land_goods(root: Path, day: dt.date, goods: list[dict]) -> None:
    """Land a goods catalog as of `day` (what `extract_goods` writes)."""
    atomic_write(root / "landing" / "goods" / f"dt={day.isoformat()}" / "goods.jsonl",
                  _jsonl(goods))


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ValueError(f"date range is empty: {start} is after {end}")
    return [start + dt.timedelta(n) for n in range((end - start).days + 1)]


def check_orders(profile: BusProfile, orders: list[dict]) -> None:
    """BusProfileError naming the field and its setting when the bus's orders lack what the
    profile says they carry (one page is enough to tell)."""
    if not orders:
        return
    have = {k for o in orders if isinstance(o, dict) for k in o}  # any order's fields
    shown = ", ".join(sorted(have)[:15])
    for name, fix in (("id", "the bus must send each order's id"),
                      (profile.date_field, "set bus.date_field to the name it uses"),
                      ("basket", "the bus must expand baskets: check bus.expand")):
        if name and name not in have:
            raise BusProfileError(f"the bus's orders have no {name!r} field (they have: "
                                  f"{shown}): {fix}")
    if profile.phone_field not in have:
        log.warning("no order on this page has a %r field (they have: %s): every order is a "
                    "guest order unless bus.phone_field names the phone", profile.phone_field,
                    shown)


def _fetch_pages(client: BusClient, todo: list[_Day], progress: Progress) -> None:
    """Page 1 of each day, then all missing pages of all days, from one bounded pool.

    Each of the pool's workers takes the next (day, page) job from one shared list until
    it is empty: a page is fetched by exactly one worker, and the main thread is not woken
    for every page. The first failure (a BusError, or an interrupt of the main thread)
    stops the workers taking new pages, and is raised once they have stopped.
    """
    def fetch(day: _Day, page: int) -> dict:
        return client.orders_page(page, **client.profile.range_params(day.day, day.day))

    def first(day: _Day) -> int:
        body = fetch(day, 1)
        orders = client.orders(body)
        check_orders(client.profile, orders)
        day.start(client.page_count(body), orders)
        return len(orders)

    with ThreadPoolExecutor(client.workers, thread_name_prefix="bus") as pool:
        for n in pool.map(first, todo):
            progress.advance(n)
        pages = [(d, p) for d in todo for p in d.missing()]
        progress.expect(len(todo) + len(pages))
        jobs, taking, stop = iter(pages), threading.Lock(), threading.Event()

        def worker() -> None:
            while not stop.is_set():
                with taking:
                    day, page = next(jobs, (None, 0))
                if day is None:
                    return
                try:
                    body = fetch(day, page)
                    if client.page_count(body) != day.page_count:
                        log.warning("%s: pageCount went from %d to %d during paging",
                                    day.day, day.page_count, client.page_count(body))
                    orders = client.orders(body)
                    day.save(page, orders)
                except BaseException:
                    stop.set()
                    raise
                progress.advance(len(orders))

        try:
            for running in [pool.submit(worker) for _ in range(min(client.workers, len(pages)))]:
                running.result()  # re-raises BusError: the run fails
        finally:
            stop.set()


def extract_orders(client: BusClient, start: dt.date, end: dt.date, root: Path,
                   refetch: bool = False, lookback: int = 0) -> list[dict]:
    """Land the orders of start..end, and again those of the `lookback` days before start
    (orders the bus listed late); return the manifests of the landed days, oldest first.

    With a server-side range (bus.date_filter "from,to") each day is one landing partition.
    With a lower bound or no filter, one partition (dt=end) holds what the bus listed from
    the lookback on (`_extract_unfiltered`). Either way readers put every order in its own
    day (etl.clean.read_clean)."""
    profile = client.profile
    if profile.strategy != "range":
        return [_extract_unfiltered(client, start, end, root, refetch, lookback)]
    asked = [_Day(root, d, client.per_page) for d in days(start, end)]
    before = (_Day(root, start - dt.timedelta(days=n), client.per_page)
              for n in range(lookback, 0, -1))
    again = [d for d in before if d.complete]  # only days landed already are fetched again
    all_days = again + asked
    todo = again + [d for d in asked if refetch or not d.complete]

    log.info("bus.date_filter %s: one server-side range per day, %s..%s%s", profile.date_filter,
             start, end, f"; the {len(again)} days before fetched again (bus.lookback_days)"
             if again else "")
    if len(todo) < len(all_days):
        log.info("%d of %d days already landed (use --refetch to fetch them again)",
                 len(all_days) - len(todo), len(all_days))
    with Progress("extract orders", total=len(todo), unit="page") as progress:
        _fetch_pages(client, todo, progress)
    for d in todo:
        manifest = d.finish()
        log.info("landed %s: %d orders in %d pages", d.day, manifest["orders"], manifest["pages"])
    return [d.manifest() for d in all_days]


STATE = Path("landing") / "orders" / "_bus_state.json"

_PAGING = {  # how a night without a date filter pages once it knows where to stop
    "asc": "paging back from the last page (bus.order_sort asc) until a page is older",
    "desc": "paging from the first page (bus.order_sort desc) until a page is older",
    "none": "every page (bus.order_sort none: the bus's order says nothing)",
}


def _extract_unfiltered(client: BusClient, start: dt.date, end: dt.date, root: Path,
                        refetch: bool, lookback: int) -> dict:
    """Without a server-side range: everything the bus lists from `threshold` on, landed as
    dt=end. The first night reads the whole listing; later nights start `lookback` days
    before the last day already landed (landing/orders/_bus_state.json) and, when the bus
    sorts by date (bus.order_sort), stop after the first batch of pages (one per worker)
    with a page entirely older than that."""
    profile = client.profile
    day = _Day(root, end, client.per_page)
    if day.complete and not refetch:
        log.info("%s already landed (use --refetch to fetch it again)", end)
        return day.manifest()
    state_path = root / STATE
    seen = (dt.date.fromisoformat(json.loads(state_path.read_text())["seen_through"])
            if state_path.exists() else None)
    threshold = None if seen is None else min(start, seen - dt.timedelta(days=lookback))
    params = {}
    if profile.strategy == "since":
        threshold = threshold or start
        params = profile.range_params(threshold, end)
        how = (f"bus.date_filter {profile.date_filter} is a lower bound: everything listed "
               f"since {threshold}")
    elif threshold is None:
        how = "bus.date_filter none, first night: every page of the bus (the whole history)"
    else:
        how = (f"bus.date_filter none: orders from {threshold} on (landed through {seen}, "
               f"bus.lookback_days {lookback}), {_PAGING[profile.order_sort]}")
    log.info("extract %s..%s: %s", start, end, how)
    shutil.rmtree(day.parts, ignore_errors=True)
    day.parts.mkdir(parents=True)
    first = client.orders_page(1, **params)
    check_orders(profile, client.orders(first))
    day.page_count = count = client.page_count(first)
    read_all = bool(params) or threshold is None or profile.order_sort == "none"
    order = list(range(1, count + 1))
    if not read_all and profile.order_sort == "asc":
        order.reverse()
    newest, fetched = None, []

    def keep(orders: list[dict]) -> tuple[list[dict], bool]:
        """The orders to land, and whether the page is entirely older than the threshold."""
        nonlocal newest
        out, older = [], True
        for o in orders:
            when = profile.order_day(o) if isinstance(o, dict) else None
            if when is not None and when > end:
                older = False
                continue  # a later night's
            if when is not None and threshold is not None and when < threshold:
                continue  # landed already, before the lookback
            older = False
            if when is not None and (newest is None or when > newest):
                newest = when
            out.append(o)  # undated ones too: the cleaning job quarantines them
        return out, older and threshold is not None

    def page(n: int) -> dict:
        return first if n == 1 else client.orders_page(n, **params)

    with Progress("extract orders", total=count, unit="page") as progress, \
            ThreadPoolExecutor(client.workers, thread_name_prefix="bus") as pool:
        for at in range(0, count, client.workers):
            batch, reached = order[at: at + client.workers], False
            for n, body in zip(batch, pool.map(page, batch), strict=True):
                landed, older = keep(client.orders(body))
                day.save(n, landed)
                fetched.append(n)
                progress.advance(len(landed))
                reached = reached or older
            if reached and not read_all:
                log.info("stopped after %d of %d pages: the rest is older than %s",
                         len(fetched), count, threshold)
                break
    manifest = day.finish(sorted(fetched), {
        "strategy": profile.strategy, "from": None if threshold is None else str(threshold),
        "pagesRead": len(fetched), "bus": {"pageCount": count}})
    if newest is not None:
        through = max(newest, seen) if seen else newest
        atomic_write(state_path, json.dumps({"seen_through": min(through, end).isoformat()}))
    log.info("landed %s: %d orders from %d of %d pages", end, manifest["orders"], len(fetched),
             count)
    return manifest


def fetch_goods(client: BusClient) -> list[dict]:
    """The whole goods catalog, every page of /goods."""
    path, key = client.profile.goods_path, client.profile.goods_key
    first = client.get_page(path, key, 1)
    pages = [first[key]]
    with ThreadPoolExecutor(client.workers, thread_name_prefix="bus") as pool:
        pages += pool.map(lambda p: client.get_page(path, key, p)[key],
                          range(2, client.page_count(first) + 1))
    log.info("fetched the goods catalog: %d pages", len(pages))
    return [g for page in pages for g in page]


GOODS_STATUS = Path("landing") / "goods" / "_status.json"


def extract(client: BusClient, start: dt.date, end: dt.date, root: Path,
            refetch: bool = False, lookback: int = 0) -> list[dict]:
    """Land the orders of start..end (and the lookback's) and the catalog as of `end`. A
    catalog that cannot be pulled keeps the last landed one: a warning, counted in
    landing/goods/_status.json (`failures`), and the night goes on."""
    manifests = extract_orders(client, start, end, root, refetch, lookback)
    status_path = root / GOODS_STATUS
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    try:
        goods = fetch_goods(client)
        land_goods(root, end, goods)
        log.info("landed goods as of %s: %d items", end, len(goods))
        status.update(last_success=end.isoformat(), last_error=None)
    except (BusError, BusProfileError) as exc:
        status.update(failures=status.get("failures", 0) + 1, last_error=str(exc),
                      last_failure=end.isoformat())
        log.warning("the goods catalog was not refreshed (%s); the last one landed (%s) "
                    "stays", exc, status.get("last_success") or "none: names stay unknown")
    atomic_write(status_path, json.dumps(status, indent=1))
    return manifests
