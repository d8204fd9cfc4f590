"""The order bus client: pulls a date range of orders and the goods catalog into landing/.

    landing/orders/dt=YYYY-MM-DD/orders.jsonl   raw orders as the bus sent them
    landing/orders/dt=YYYY-MM-DD/_manifest.json orders, pages, sha256 (written last)
    landing/goods/dt=YYYY-MM-DD/goods.jsonl     the catalog as of that day

Page 1 tells the page count; pages 2..C (the last included) are then fetched by a bounded
thread pool. Transient failures (connection errors, 429 with Retry-After, 5xx) are retried
with exponential backoff by urllib3's Retry. Files are written to a temporary name and
renamed, so a crash never leaves a half-written day that looks complete.

Run with: shoprecs extract --date 2024-01-30   (or --from 2024-01-01 --to 2024-01-30)
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)


class BusError(RuntimeError):
    """The bus could not be read after retries; the message says which request failed."""


class BusClient:
    """A pooled, retrying HTTP client for the order bus."""

    def __init__(self, url: str, user: str, password: str, *, per_page: int = 500,
                 workers: int = 8, timeout: float = 30.0, retries: int = 5):
        self.url = url.rstrip("/")
        self.per_page = per_page
        self.workers = workers
        self.timeout = timeout
        retry = Retry(total=retries, backoff_factor=0.5, backoff_jitter=0.25,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods={"GET"},
                      respect_retry_after_header=True, raise_on_status=False)
        self.session = requests.Session()
        self.session.auth = (user, password)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=workers)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    @classmethod
    def from_settings(cls, s) -> BusClient:
        return cls(s.bus_url, s.bus_user, s.bus_password, per_page=s.bus_per_page,
                   workers=s.bus_workers, timeout=s.bus_timeout, retries=s.bus_retries)

    def get(self, path: str, **params) -> dict:
        where = f"GET {self.url}{path} {params}"
        try:
            resp = self.session.get(self.url + path, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise BusError(f"{where} failed: {exc}") from exc
        if resp.status_code == 401:
            raise BusError(f"{where}: 401 unauthorized; check bus.user/SHOPRECS_BUS_PASSWORD")
        if resp.status_code >= 400:
            raise BusError(f"{where}: HTTP {resp.status_code} after retries: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise BusError(f"{where}: response is not valid JSON ({exc})") from exc

    def pages(self, path: str, key: str, desc: str, **params) -> Iterator[list[dict]]:
        """Every page of `path` in order, 1..pageCount, the last page included."""
        params["per-page"] = self.per_page
        first = self.get(path, page=1, **params)
        count = int(first["pageCount"])
        bar = tqdm(total=count, desc=desc, unit="page", disable=not sys.stderr.isatty(),
                   leave=False)
        bar.update(1)
        yield first[key]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="bus") as pool:
            for body in pool.map(lambda p: self.get(path, page=p, **params), range(2, count + 1)):
                bar.update(1)
                yield body[key]
        bar.close()


def _write_atomic(path: Path, lines: Iterator[str]) -> str:
    """Write lines to `path` via a temporary file; return the content's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    with open(tmp, "w", encoding="utf-8") as fh:
        for line in lines:
            digest.update(line.encode())
            fh.write(line)
    os.replace(tmp, path)
    return digest.hexdigest()


def extract_orders_day(client: BusClient, day: dt.date, root: Path) -> dict:
    """Land every order the bus lists for `day`; return the day's manifest."""
    out = root / "landing" / "orders" / f"dt={day.isoformat()}"
    stats = {"orders": 0, "pages": 0}

    def lines():
        for page in client.pages("/orders", "orders", f"orders {day}", expand="basket",
                                 **{"from": day.isoformat(), "to": day.isoformat()}):
            stats["pages"] += 1
            for order in page:
                stats["orders"] += 1
                yield json.dumps(order, ensure_ascii=False, separators=(",", ":")) + "\n"

    sha = _write_atomic(out / "orders.jsonl", lines())
    manifest = {"dt": day.isoformat(), "sha256": sha, **stats}
    _write_atomic(out / "_manifest.json", iter([json.dumps(manifest, indent=1)]))
    log.info("landed %s: %d orders in %d pages", day, stats["orders"], stats["pages"])
    return manifest


def extract_goods(client: BusClient, day: dt.date, root: Path) -> int:
    """Land the whole goods catalog as of `day`; return the number of goods."""
    count = 0

    def lines():
        nonlocal count
        for page in client.pages("/goods", "goods", "goods"):
            for item in page:
                count += 1
                yield json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"

    _write_atomic(root / "landing" / "goods" / f"dt={day.isoformat()}" / "goods.jsonl", lines())
    log.info("landed goods as of %s: %d items", day, count)
    return count


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ValueError(f"date range is empty: {start} is after {end}")
    return [start + dt.timedelta(n) for n in range((end - start).days + 1)]


def extract(client: BusClient, start: dt.date, end: dt.date, root: Path) -> list[dict]:
    """Land orders for each day of start..end and the catalog as of `end`."""
    manifests = [extract_orders_day(client, day, root) for day in days(start, end)]
    extract_goods(client, end, root)
    return manifests
