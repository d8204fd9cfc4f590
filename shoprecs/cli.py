"""The `shoprecs` command: one subcommand per step of the nightly pipeline, plus serving.

    shoprecs simulator [--profile P]      the order bus simulator on generated data
    shoprecs extract --from D --to D      orders + catalog from the bus into landing/
    shoprecs clean --from D --to D        Spark cleaning into clean/ and quarantine/
    shoprecs attribute --date D           impressions x clicks x orders, per A/B arm
    shoprecs train --date D               ALS + FP-Growth on the window ending at D
    shoprecs publish [--version V]        serving/<V> and serving/CURRENT
            [--store mongo|both]          ... or MongoDB's versioned collections
    shoprecs run --from D --to D          all of the above, one Spark session
    shoprecs catalog                      the bus's catalog now: availability, categories
    shoprecs serve                        the API on CherryPy
    shoprecs rollback [--to VERSION]      serve the previously published version again
    shoprecs demo                         everything, on generated data, with answers
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import sys
import traceback

import click

import pipeline
from core import config as shoprecs_config
from core.errors import NotSwitched, OperatorError
from core.logs import configure_logging
from core.stores import PUBLISH_STORES
from models.gate import QualityGateError
from simulation.profiles import PROFILES

_DATE = click.DateTime(formats=["%Y-%m-%d"])


def with_dates(fn):
    """--date D, or --from D and --to D: `fn` gets the days checked, as `start` and `end`."""
    @click.option("--date", type=_DATE, help="One day (YYYY-MM-DD).")
    @click.option("--from", "start", type=_DATE, help="First day of a range.")
    @click.option("--to", "end", type=_DATE, help="Last day of a range.")
    @functools.wraps(fn)
    def checked(*args, date: dt.datetime | None, start: dt.datetime | None,
                end: dt.datetime | None, **kwargs):
        if date is not None:
            if start or end:
                raise click.UsageError("give either --date or --from/--to, not both")
            start = end = date
        if start is None or end is None:
            raise click.UsageError("give --date D, or both --from D and --to D")
        if end < start:
            raise click.UsageError(f"--from {start:%Y-%m-%d} is after --to {end:%Y-%m-%d}")
        return fn(*args, start.date(), end.date(), **kwargs)
    return checked


class _Commands(click.Group):
    """Known failures (core/errors.py) end in one line and their exit code; -v adds the
    traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OperatorError as exc:
            if ctx.params.get("verbose"):
                click.echo(traceback.format_exc(), err=True)
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.code)


@click.group(cls=_Commands, epilog="Exit codes: 0 done, 1 failed (a bug: traceback), 2 bad "
             "command line, 3 bad configuration, 4 bus unreachable or refusing the "
             "credentials, 5 bus answers unlike its profile (bus.*), 6 no landed or clean "
             "data (run the step before), 7 warehouse locked by another run, 8 MongoDB or "
             "the Spark master unreachable, 9 serving not switched (nothing to roll back to).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              envvar="SHOPRECS_CONFIG", help="TOML configuration file.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, and the traceback of "
              "a failure.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """shoprecs: the nightly recommender pipeline and its API."""
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    ctx.obj = shoprecs_config.load(config_path)


@main.command()
@with_dates
@click.option("--refetch", is_flag=True, help="Fetch days again even if already landed.")
@click.pass_obj
def extract(settings, start, end, refetch):
    """Pull orders (and the catalog) from the bus into landing/ (resumes after a crash)."""
    manifests = pipeline.extract(settings, start, end, refetch)
    first, last = pipeline.landed_range(manifests)
    click.echo(f"landed {sum(m['orders'] for m in manifests)} orders in {len(manifests)} "
               f"partitions ({first}..{last}: clean these)")


@main.command()
@click.pass_obj
def catalog(settings):
    """Pull the catalog from the bus and apply it now: goods out of stock leave every answer
    within seconds, without a retrain (the hourly DAG runs this)."""
    from engine.shoprules import RulesError
    from etl.bus import BusError

    try:
        found = pipeline.catalog(settings)
    except (BusError, RulesError) as exc:
        raise click.ClickException(f"catalog not refreshed, the one in force stays: {exc}; "
                                   "check bus.url and the bus's /goods") from exc
    click.echo(f"catalog {found['catalog']}: {found['goods']} goods, "
               f"{found['unavailable']} unavailable")


@main.command()
@with_dates
@click.pass_obj
def clean(settings, start, end):
    """Clean landed orders into clean/orders and quarantine/ (Spark)."""
    click.echo(pipeline.clean(settings, start, end))


@main.command()
@click.option("--date", type=_DATE, required=True, help="The night: impressions of the "
              "attribution.days days up to it, and the orders that followed.")
@click.pass_obj
def attribute(settings, date):
    """Did the recommendations sell? Impressions joined with clicks and orders, per A/B arm
    and route, with confidence intervals: reports/attribution/<date>.json (Spark)."""
    from experiments.attribution import describe

    for line in describe(pipeline.attribute(settings, date.date())):
        click.echo(line)


@main.command()
@click.option("--date", type=_DATE, required=True, help="Last day of the training window.")
@click.pass_obj
def train(settings, date):
    """Train ALS and FP-Growth on the window ending at --date (Spark)."""
    click.echo(pipeline.train(settings, date.date()))


@main.command()
@click.option("--date", type=_DATE, required=True, help="Last day of the training window.")
@click.option("--quick", is_flag=True, help="A small grid (2 ALS settings x 5 blends); "
              "default: tune.quick.")
@click.pass_obj
def tune(settings, date, quick):
    """Search ALS and blend parameters on a validation window; write models/TUNED.json."""
    report = pipeline.tune(settings, date.date(), quick or None)
    click.echo(f"best: {report['score']:.3f} x popularity's MAP@10 (mean of both modes) on "
               f"{report['validation'][0]}..{report['validation'][1]}")
    click.echo(f"ALS: {report['als']}\nhybrid: {report['hybrid']}")
    click.echo(f"written to {settings.root / 'models' / 'TUNED.json'}; "
               "later `shoprecs train` runs use it")


@main.command()
@click.option("--version", help="Model version to publish (default: models/LATEST).")
@click.option("--skip-gate", is_flag=True, help="Publish even if the quality gate fails.")
@click.option("--store", type=click.Choice(PUBLISH_STORES),
              help="Where to publish: serving/ (snapshot), MongoDB (mongo, a Spark job) or "
                   "both (default: publish.store).")
@click.pass_obj
def publish(settings, version, skip_gate, store):
    """Gate a trained version, publish it and switch what is served to it (serving/CURRENT,
    or MongoDB's serving.current)."""
    from pymongo.errors import PyMongoError

    from engine import SnapshotError

    try:
        click.echo(pipeline.publish(settings, version, skip_gate, store))
    except (QualityGateError, SnapshotError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except PyMongoError as exc:
        raise click.ClickException(f"MongoDB at mongo.uri failed: {exc}; check that the "
                                   "server is up and SHOPRECS_MONGO_URI is right") from exc


@main.command()
@with_dates
@click.pass_obj
def run(settings, start, end):
    """The whole night for the given days: extract, clean, attribute, train, gate,
    publish, reload, privacy (pipeline/night.py; the Airflow DAG runs the same steps)."""
    timings: dict = {}
    results = pipeline.run(settings, start, end, timings=timings)
    served = results.get("publish") or f"nothing new ({results['train']} is older than the " \
        "version served)"
    click.echo(f"published {served}; step seconds: {timings}")


@main.command()
@click.option("--date", type=_DATE, help="The day the age is counted from (default: today).")
@click.option("--apply", is_flag=True, help="Rewrite the days (default: a dry run that only "
              "says what it would rewrite).")
@click.pass_obj
def retention(settings, date, apply):
    """Raw landed orders older than privacy.raw_retention_days, once cleaned, keep only
    each order's key: no phone stays in landing/ or quarantine/ past the limit."""
    from privacy.retention import retention as run_retention

    today = date.date() if date else dt.date.today()
    report = run_retention(settings, today, apply=apply)
    if report["limit"] is None:
        click.echo("privacy.raw_retention_days is 0: raw orders are kept as landed")
        return
    verb = "rewrote" if apply else "would rewrite (dry run; --apply to do it)"
    click.echo(f"{verb}: {len(report['days'])} landed days before {report['limit']} "
               f"({report['orders']} orders), {report['quarantine_files']} quarantine files")
    for day in report["days"]:
        click.echo(f"  landing/orders/dt={day}")


@main.command()
@click.argument("phone")
@click.pass_obj
def forget(settings, phone):
    """Erase a shopper on request: their phone and key leave landing, quarantine, clean
    data, the id mapping, the models, the served results and the events now; the request
    (key and time only) stays so that no later backfill brings them back. Idempotent."""
    from core.phones import InvalidPhone
    from privacy.erasure import forget as erase

    try:
        done = erase(settings, phone)
    except InvalidPhone as exc:
        raise click.BadParameter(f"{exc}", param_hint="PHONE") from None
    state = "recorded" if done["new_request"] else f"already recorded at {done['requested_at']}"
    click.echo(f"forgot shopper {done['key'][:12]}... ({state}); removed: "
               + ", ".join(f"{zone} {n}" for zone, n in done["removed"].items()))


@main.command("rotate-key")
@click.pass_obj
def rotate_key(settings):
    """Re-key every stored shopper key under the key in SHOPRECS_PRIVACY_NEW_KEY (never on
    the command line), in one resumable pass; then append the new key to
    privacy.key_rotations everywhere and restart the service."""
    from privacy.rotation import rotate

    counts = rotate(settings, settings.privacy.new_key)
    click.echo(f"re-keyed: {counts}; now append the new key to privacy.key_rotations "
               "(SHOPRECS_PRIVACY_KEY_ROTATIONS) for the pipeline and the service, and "
               "restart the service")


@main.command()
@click.option("--host", help="Interface to listen on (default: service.host).")
@click.option("--port", type=int, help="Port (default: service.port).")
@click.option("--threads", type=int, help="Worker threads (default: service.threads).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Server processes on the port, one per core (default: service.workers).")
@click.option("--reload-interval", type=float,
              help="Seconds between looks at serving/CURRENT; 0: only on SIGHUP or "
                   "POST /admin/reload (default: service.reload_interval).")
@click.pass_obj
def serve(settings, host, port, threads, workers, reload_interval):
    """Serve the API from serving/CURRENT with CherryPy (SIGHUP: reload, SIGTERM: stop)."""
    if reload_interval is not None:
        settings = settings.replace(service_reload_interval=reload_interval)
    address = (host or settings.service.host, port or settings.service.port,
               threads or settings.service.threads)
    workers = workers or settings.service.workers
    if workers > 1:
        from service.workers import Supervisor

        try:
            sys.exit(Supervisor(settings, *address, workers).run())
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
    from service import create_app
    from service.server import serve as serve_app

    serve_app(create_app({"SETTINGS": settings}), *address)


@main.command()
@click.option("--to", "version", help="Version to serve (default: the one published "
              "before the version served now).")
@click.option("--store", type=click.Choice(PUBLISH_STORES), default=None,
              help="Which store to switch back: snapshot (serving/CURRENT), mongo "
              "(serving.current in MongoDB) or both (default: publish.store).")
@click.pass_obj
def rollback(settings, version, store):
    """Switch serving back to an earlier published version (checked first)."""
    from core.locks import warehouse_lock
    from core.stores import mongo, publish_stores
    from engine import SnapshotError
    from engine.versions import rollback as switch_back

    try:
        with warehouse_lock(settings):
            for kind in publish_stores(settings, store):  # MongoDB first
                if kind == "mongo":
                    from engine.mongo import MongoStore

                    previous, now = MongoStore(mongo(settings)).rollback(version)
                    _switched("MongoDB serving.current", previous, now)
                    version = now  # with both stores, the folder follows MongoDB's choice
                else:
                    _switched("serving/CURRENT", *switch_back(settings.root, version))
    except OperatorError:
        raise
    except (SnapshotError, ValueError) as exc:  # nothing to switch to: serving unchanged
        raise NotSwitched(f"{exc}; serving is unchanged") from exc


def _switched(what: str, previous: str | None, now: str) -> None:
    if previous == now:
        click.echo(f"{what}: {now} is already served; nothing changed")
    else:
        click.echo(f"{what}: {previous} -> {now}; a running service picks it up on its next "
                   "poll (or now: kill -HUP <pid>, or POST /admin/reload)")


_HTTP_FAULTS = {"latency_ms": "Delay per page (ms).", "error_rate": "Share of pages -> 503.",
                "throttle_rate": "Share of pages -> 429 with Retry-After.",
                "drop_rate": "Share of pages whose connection drops half-way.",
                "truncate_rate": "Share of pages with truncated JSON."}
_DATA_FAULTS = {"dup_pages": "Share of orders listed twice on their day.",
                "dup_days": "Share of orders listed again the next day.",
                "resend": "Share of orders re-sent with a changed basket.",
                "no_phone": "Share of orders without a phone.",
                "bad_lines": "Share of orders with an invalid line.",
                "bad_orders": "Share of orders with a garbage date or phone.",
                "late": "Share of orders listed only --late-days after their day (by the "
                        "clock: the simulator lists them once that day has come).",
                "placeholder": "Share of orders with a placeholder phone (+7 (123) 456-7890)."}


def fault_options(fn):
    for name, text in reversed({**_HTTP_FAULTS, **_DATA_FAULTS}.items()):
        fn = click.option(f"--{name.replace('_', '-')}", name, type=float, default=0.0,
                          show_default=True, help=text)(fn)
    return fn


@main.command()
@click.option("--retail", type=click.Path(exists=True, dir_okay=False),
              help="Serve this Online Retail CSV(.gz) instead of generated orders.")
@click.option("--profile", "shop", type=click.Choice(list(PROFILES)), default="default",
              show_default=True, help="The kind of shop generated (simulation/profiles.py).")
@click.option("--start", type=_DATE, default="2024-01-01", show_default=True)
@click.option("--days", type=int, help="Days of orders  [default: the profile's; 30]")
@click.option("--orders", type=int, help="Orders in all  [default: the profile's; 20000]")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--retry-after", type=int, default=1, show_default=True,
              help="Retry-After seconds sent with 429.")
@fault_options
@click.option("--late-days", type=int, default=2, show_default=True,
              help="With --late: how many days after its day an order is listed.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--shoppers", "service", metavar="URL",
              help="Close the loop: simulated shoppers of these orders visit the service at "
              "URL, click and buy what it shows them (simulation/shoppers.py); orders land here.")
@click.option("--visits", type=int, default=500, show_default=True,
              help="With --shoppers: visits per round.")
@click.option("--every", type=float, default=60.0, show_default=True,
              help="With --shoppers: seconds between rounds.")
@click.option("--buy-rate", type=float, default=0.05, show_default=True,
              help="With --shoppers: chance a visit buys one of the goods shown.")
@click.option("--uplift", default="", metavar="ARM=P,...",
              help="With --shoppers: extra chance to buy in these A/B arms, e.g. b=0.05.")
@click.pass_obj
def simulator(settings, retail, shop, start, days, orders, seed, retry_after, late_days, host,
              port, service, visits, every, buy_rate, uplift, **faults):
    """Run the order-bus simulator, speaking the configured bus profile (bus.*; credentials:
    bus.user / bus.password)."""
    from core.bus_profile import BusProfile
    from simulation import simulator as sim
    from simulation.faults import DataFaults, inject

    if retail:
        from simulation.retail import load_retail

        data, goods = load_retail(retail)
    else:
        from simulation.generator import generate, profile

        shape = profile(shop, start=start.date(), seed=seed, days=days, orders=orders)
        data, goods, _ = generate(shape)
    data, truth = inject(data, DataFaults(**{k: faults[k] for k in _DATA_FAULTS}, seed=seed,
                                          late_days=late_days))
    http = sim.HttpFaults(**{k: faults[k] for k in _HTTP_FAULTS}, retry_after_s=retry_after,
                          seed=seed)
    bus = BusProfile.from_settings(settings.bus)
    app = sim.create_app(data, goods, user=settings.bus.user, password=settings.bus.password,
                         faults=http, profile=bus,  # late orders: listed by the bus's clock
                         clock=lambda: dt.datetime.now(bus.zone).replace(tzinfo=None))
    click.echo(f"bus simulator: {len(data)} records ({len(truth.orders)} valid orders), "
               f"{len(goods)} goods on http://{host}:{port}")
    if service:
        from simulation.shoppers import Behaviour, parse_uplift, shop_rounds

        try:
            planted = parse_uplift(uplift)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--uplift") from exc
        shop_rounds(service.rstrip("/"), f"http://{host}:{port}",
                    (settings.bus.user, settings.bus.password), data, goods, visits, every,
                    Behaviour(buy_rate=buy_rate, uplift=planted, seed=seed))
    sim.serve(app, host, port)


@main.command()
@click.option("--workdir", default="var/demo", show_default=True, type=click.Path())
@click.option("--profile", "shop", type=click.Choice(list(PROFILES)), default="default",
              show_default=True, help="Which kind of shop to generate (simulation/generator.py).")
@click.option("--orders", type=int, help="Orders to generate (default: the profile's).")
@click.option("--days", type=int, help="Days of orders (default: the profile's).")
def demo(workdir, shop, orders, days):
    """Generate a shop, run the nightly pipeline on it, serve it and show real answers."""
    from shoprecs.demo import run_demo
    from simulation.generator import profile

    try:
        run_demo(workdir, profile(shop, orders=orders, days=days))
    except QualityGateError as exc:
        raise click.ClickException(f"the quality gate kept the model from being served: "
                                   f"{exc}") from exc


if __name__ == "__main__":
    main()
