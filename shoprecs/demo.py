"""`shoprecs demo`: the whole system on a generated shop, start to finish.

1. generates a shop (seeded; `--profile` picks its kind, simulation/generator.py) and serves its
   orders from the bus simulator;
2. runs the nightly pipeline for those days: extract, clean, train, publish;
3. starts the API on CherryPy in a subprocess and asks it, over HTTP, for a known
   shopper's recommendations, an unknown shopper's, and a product's associations;
4. runs an A/B test (model vs popular goods): every shopper visits the storefront once
   (simulation/shoppers.py) and buys one of the goods shown with 5%, 8 points more in the model
   arm (planted); the next night lands those orders and the attribution reports the
   uplift with its confidence interval;
5. stops everything it started. Step timings go to <workdir>/timings.json.

Run with: make demo   (or: shoprecs demo --workdir var/demo)
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import requests

import pipeline
from core import config as shoprecs_config
from core.phones import normalize
from models.gate import QualityGateError
from simulation.generator import GeneratorParams, Truth, format_phone, generate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator(orders, goods, settings, faults=None, clock=None):
    """The bus simulator in a background thread, speaking the settings' bus profile;
    returns the server (call .stop())."""
    from cheroot.wsgi import Server

    from core.bus_profile import BusProfile
    from simulation.simulator import HttpFaults, create_app

    app = create_app(orders, goods, user=settings.bus.user, password=settings.bus.password,
                     faults=faults or HttpFaults(), profile=BusProfile.from_settings(settings.bus),
                     clock=clock)
    host, port = settings.bus.url.rsplit(":", 1)
    server = Server((host.split("//")[1], int(port)), app, numthreads=8)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    return server


def start_service(settings, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "SHOPRECS_WAREHOUSE_ROOT": str(settings.root),
           "SHOPRECS_PRIVACY_HMAC_KEY": settings.privacy.hmac_key,
           "SHOPRECS_EXPERIMENT_NAME": settings.experiment.name,
           "SHOPRECS_EXPERIMENT_ARMS": settings.experiment.arms}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoprecs.cli", "serve", "--port", str(settings.service.port)],
        env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{settings.service.port}/ready"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}; see {log_path}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"service not ready after 60 s; see {log_path}")


def _show(title: str, resp: requests.Response, mark=lambda item: "") -> None:
    print(f"\n== {title}\n   GET {resp.url}\n   HTTP {resp.status_code}  "
          f"version={resp.headers.get('X-Model-Version')}  "
          f"source={resp.headers.get('X-Recommendation-Source', '-')}")
    for item in resp.json():
        print(f"   {mark(item):2}{json.dumps(item, ensure_ascii=False)}")


def ask(base: str, truth, goods: list[dict], orders: list[dict]) -> None:
    """Query the running service and print what a storefront and a merchandiser see."""
    goods_names = {g["id"]: g["name"] for g in goods}
    category = {g["id"]: g.get("category") for g in goods}
    counts = Counter(normalize(o["clientTel"]) for o in orders if o["clientTel"])
    shopper = counts.most_common(1)[0][0]  # the demo's best customer
    taste = set(truth.cluster_items[truth.cluster_of[shopper]])
    phone = format_phone(shopper, 1)
    resp = requests.get(f"{base}/users/{quote(phone)}/recommendations", params={"limit": 10})
    _show(f"shopper {phone} (the best customer; taste cluster {truth.cluster_of[shopper]}; "
          "* = from that cluster)", resp, lambda i: "*" if i["goodsId"] in taste else "")
    hits = sum(i["goodsId"] in taste for i in resp.json())
    print(f"   {counts[shopper]} orders; {hits}/10 recommendations come from the shopper's "
          f"own taste cluster ({len(taste)} of {len(goods_names)} goods)")
    resp = requests.get(f"{base}/users/{quote(phone)}/recommendations",
                        params={"limit": 5, "exclude_bought": "true"})
    _show("the same shopper, goods new to them only (exclude_bought=true)", resp,
          lambda i: "*" if i["goodsId"] in taste else "")
    shown = [i["goodsId"] for i in resp.json()]
    wanted = category.get(shown[0]) if shown else None
    resp = requests.get(f"{base}/users/{quote(phone)}/recommendations",
                        params={"limit": 5, "category": wanted, "exclude": ",".join(
                            str(g) for g in shown[:2])})
    _show(f"the same shopper, only category {wanted!r}, without the first two above "
          "(category=, exclude=: e.g. a category page with those already in the cart)", resp,
          lambda i: f"[{category.get(i['goodsId'])}] ")
    stranger = quote("+7 (999) 000-0000")
    resp = requests.get(f"{base}/users/{stranger}/recommendations", params={"limit": 5})
    _show("unknown shopper: popular fallback", resp)
    seen = truth.bundles[0][0]
    resp = requests.get(f"{base}/users/{stranger}/recommendations",
                        params={"limit": 5, "recent": str(seen)})
    _show(f"the same unknown shopper, who just looked at {seen} ({goods_names[seen]}): "
          "recent= brings its neighbours and rules", resp)
    bundle = truth.bundles[0]
    resp = requests.get(f"{base}/products/{bundle[0]}/associations", params={"limit": 5})
    _show(f"product {bundle[0]} ({goods_names[bundle[0]]}); planted bundle {bundle}", resp,
          lambda r: "*" if set(r["consequent"]) <= set(bundle) else "")
    resp = requests.get(f"{base}/products/{bundle[0]}/similar", params={"limit": 5})
    _show(f"goods similar to {bundle[0]} by ALS item factors", resp)
    served = requests.get(f"{base}/models").json()
    print("\n== model\n   " + json.dumps(served["trainedOn"]))
    evaluation = served["metrics"].get("evaluation", {})
    for name, modes in evaluation.get("models", {}).items():
        print(f"   holdout MAP@{evaluation['k']} {name:>13}: " + "  ".join(
            f"{mode} {m['map']:.4f}" for mode, m in modes.items()))


DEMO_ARMS = "popular:popular:50, model:model:50"  # the first arm is the control
DEMO_BUY, DEMO_TASTE = 0.02, 0.10  # shoppers buy by their tastes: nothing planted


def shoppers_visit(base: str, settings, night) -> None:
    """The A/B test: every shopper of the shop visits the storefront once and sees their
    arm's recommendations; they buy one of the goods shown with 2%, plus 10% times the
    share of those goods from their own taste cluster (the generator's truth), through the
    bus simulator at settings.bus.url. No arm is favoured: what an arm earns, it earns by
    what it shows."""
    from simulation.shoppers import Behaviour, visit_all

    truth = night.truth
    phones = sorted({normalize(o["clientTel"]) for o in night.orders if o["clientTel"]})
    tastes = {p: frozenset(truth.cluster_items[truth.cluster_of[p]]) for p in phones
              if p in truth.cluster_of}
    print(f"\n== A/B test {settings.experiment.name!r} ({settings.experiment.arms}): "
          f"{len(phones)} simulated shoppers visit the storefront; each buys one of the "
          f"goods shown with {DEMO_BUY:.0%}, plus {DEMO_TASTE:.0%} times the share of them "
          "they like (their taste cluster): no uplift is planted ...", flush=True)
    done = visit_all(base, settings.bus.url, (settings.bus.user, settings.bus.password),
                     phones, {g["id"]: g["price"] for g in night.goods},
                     Behaviour(buy_rate=DEMO_BUY, tastes=tastes, taste_rate=DEMO_TASTE,
                               seed=1))
    print("   visits " + ", ".join(f"{arm}: {n}" for arm, n in sorted(done.visits.items()))
          + "; bought " + ", ".join(f"{arm}: {n}" for arm, n in sorted(done.buyers.items())))


def next_night(settings, day: dt.date, spark) -> None:
    """Land the orders since `day` (the shoppers' purchases), clean them, attribute."""
    from experiments.attribution import describe

    end = dt.datetime.now(dt.UTC).date()
    print(f"\n== the next night: extract, clean and attribute {day}..{end} ...", flush=True)
    first, last = pipeline.landed_range(pipeline.extract(settings, day, end))
    pipeline.clean(settings, first, last, spark)
    for line in describe(pipeline.attribute(settings, end, spark)):
        print("   " + line)


@contextlib.contextmanager
def timed(name: str, timings: dict):
    """Record how many seconds the block took in `timings[name]`, as the night does for its
    steps (pipeline/night.py)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - started, 1)


@dataclasses.dataclass
class Night:
    """What one default night did on a generated shop."""

    orders: list[dict]
    goods: list[dict]
    truth: Truth
    version: str  # the model trained
    verdict: str | None  # None: published; else the quality gate's reason it was not


def run_night(shop: GeneratorParams, settings, timings: dict | None = None,
              spark=None) -> Night:
    """Generate `shop`, serve it from the bus simulator at settings.bus.url and run the
    nightly pipeline over all its days; a model the quality gate refuses is reported, not
    raised."""
    data, goods, truth = generate(shop)
    end = shop.start + dt.timedelta(days=shop.days - 1)
    simulator = start_simulator(data, goods, settings)
    try:
        version = pipeline.run(settings, shop.start, end, spark, timings)["publish"]
        verdict = None
    except QualityGateError as exc:
        version = (settings.root / "models" / "LATEST").read_text().strip()
        verdict = str(exc)
    finally:
        simulator.stop()
    return Night(data, goods, truth, version, verdict)


def run_demo(workdir: str, shop: GeneratorParams = GeneratorParams()) -> dict:
    """The demo on the generated `shop` (its start moved so that its last day is yesterday),
    run with the configured settings but for the warehouse, bus and port it makes its own:
    the night, the answers, an A/B test with simulated shoppers and the next night's
    attribution of their purchases.

    Raises QualityGateError when the gate refuses the shop's model (nothing to show)."""
    from pipeline.spark import spark_session

    work = Path(workdir).resolve()
    shutil.rmtree(work / "warehouse", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "service.log").unlink(missing_ok=True)  # the service's starts append to it
    end = dt.date.today() - dt.timedelta(days=1)
    shop = dataclasses.replace(shop, start=end - dt.timedelta(days=shop.days - 1))
    base = shoprecs_config.load()
    settings = base.replace(warehouse_root=str(work / "warehouse"), bus_url=f"http://127.0.0.1:{free_port()}",
        service_port=free_port(), train_window_days=min(shop.days, base.train.window_days),
        experiment_name=base.experiment.name or "demo-uplift",
        experiment_arms=base.experiment.arms if base.experiment.name else DEMO_ARMS)
    print(f"generating {shop.orders} orders over {shop.start}..{end} ...", flush=True)
    timings: dict = {}
    with spark_session("shoprecs-demo") as spark:
        night = run_night(shop, settings, timings, spark)
        if night.verdict is not None:
            raise QualityGateError(f"{night.verdict} (report: {settings.root / 'models'}"
                                   f"/{night.version}/report.html)")
        base_url = f"http://127.0.0.1:{settings.service.port}"
        with timed("service start", timings):  # the model's own answers first:
            service = start_service(settings.replace(experiment_name="", experiment_arms=""),
                                    work / "service.log")  # no A/B test while it shows them
        try:
            ask(base_url, night.truth, night.goods, night.orders)
        finally:
            service.terminate()
            service.wait(timeout=30)
        simulator = start_simulator(night.orders, night.goods, settings)  # the checkout
        today = dt.datetime.now(dt.UTC).date()
        try:
            service = start_service(settings, work / "service.log")  # now with the A/B test
            try:
                with timed("shoppers", timings):
                    shoppers_visit(base_url, settings, night)
            finally:
                service.terminate()  # its workers write the impressions they hold
                service.wait(timeout=30)
            with timed("next night", timings):
                next_night(settings, today, spark)
        finally:
            simulator.stop()
    (work / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"\npublished version {night.version}; seconds per step: {timings}")
    print(f"warehouse: {settings.root}   service log: {work / 'service.log'}")
    print(f"the A/B test's report: {settings.root / 'reports' / 'attribution'}/{today}.json"
          " (also GET /experiments and /merch while `shoprecs serve` runs)")
    return timings
