"""Configuration: defaults, then a TOML file, then `SHOPRECS_*` environment variables.

The file is `$SHOPRECS_CONFIG` (or `--config` on the command line) and uses sections:

    [warehouse]
    root = "/data/shoprecs"
    [bus]
    url = "https://bus.example.com"
    user = "shoprecs"            # the password comes from SHOPRECS_BUS_PASSWORD

Every key is also settable as an environment variable named `SHOPRECS_<SECTION>_<KEY>`,
e.g. `SHOPRECS_BUS_URL`, `SHOPRECS_PRIVACY_HMAC_KEY`. Environment wins over the file.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError

log = logging.getLogger(__name__)

#: Used only when no key is configured; fine for the demo, never for real shoppers.
DEV_HMAC_KEY = "shoprecs-development-key-change-me"


@dataclass(frozen=True)
class Settings:
    """Every setting of the system, flattened as `<section>_<key>`."""

    warehouse_root: str = "var/warehouse"

    bus_url: str = "http://127.0.0.1:8765"
    bus_user: str = "shoprecs"
    bus_password: str = field(default="shoprecs", repr=False)
    bus_per_page: int = 100  # what the real bus is known to serve
    bus_workers: int = 8
    bus_timeout: float = 30.0
    bus_retries: int = 5
    # Each night fetches this many days before it again: orders listed late land in their
    # own day and the next training sees them (docs/bus.md).
    bus_lookback_days: int = 3
    # The bus profile: how this shop's bus names things (core/bus_profile.py, docs/bus.md);
    # the defaults are DESIGN.md's contract.
    bus_orders_path: str = "/orders"
    bus_goods_path: str = "/goods"
    bus_page_param: str = "page"
    bus_per_page_param: str = "per-page"
    bus_expand: str = "expand=basket"
    bus_orders_key: str = "orders"
    bus_goods_key: str = "goods"
    bus_page_count_key: str = "pageCount"
    bus_date_filter: str = "from,to"  # two names (a range), one (a lower bound), or "none"
    bus_date_filter_format: str = "%Y-%m-%d"  # strftime, or "epoch"
    bus_order_sort: str = "asc"  # without a filter: how /orders is sorted (asc, desc, none)
    bus_date_field: str = "date"  # "": orders carry no date (needs a date filter)
    bus_date_format: str = "iso"  # iso, epoch, epoch_ms, or a strftime pattern
    bus_timezone: str = "UTC"  # what a date without an offset means
    bus_phone_field: str = "clientTel"
    bus_source_field: str = ""  # e.g. "source": kept as clean/orders' source

    privacy_hmac_key: str = field(default=DEV_HMAC_KEY, repr=False)
    # Keys added by `shoprecs rotate-key`, oldest first, comma-separated: each keys the key
    # before it, so stored data is re-keyed without phones (docs/privacy.md).
    privacy_key_rotations: str = field(default="", repr=False)
    # Raw landed orders (phones) older than this many days, once cleaned, keep only each
    # order's key (`shoprecs retention`, the nightly DAG); 0 keeps them as landed forever.
    privacy_raw_retention_days: int = 30
    phone_country_code: str = "7"
    phone_trunk_prefix: str = "8"
    phone_national_length: int = 10
    # Phones that are no shopper's (a national number matching this regular expression, or
    # one with more orders on one day than phone.max_orders_per_day): their orders are kept
    # as guest orders (baskets for FP-Growth) and quarantined with the reason.
    phone_placeholders: str = r"^(1234567890|0123456789|9876543210|(\d)\2{9})$"
    phone_max_orders_per_day: int = 50

    train_window_days: int = 90
    train_holdout_days: int = 7  # the last days of the window, held out for evaluation
    train_top_k: int = 50

    # FP-Growth (models/fpgrowth.py): min_support 0 derives it from the number of baskets
    # (what min_baskets baskets make, within [0.001, 0.05]); baskets of more goods than
    # max_basket_items (bulk orders) are not mined; more itemsets than max_itemsets double
    # the support.
    fpgrowth_min_support: float = 0.0
    fpgrowth_min_confidence: float = 0.05
    fpgrowth_min_baskets: int = 50
    fpgrowth_max_basket_items: int = 100
    fpgrowth_max_itemsets: int = 200_000
    fpgrowth_partitions: int = 0  # item groups mined in parallel; 0: Spark's parallelism

    # `shoprecs tune` and the weekly DAG: a smaller search (2 ALS settings, a fifth of the
    # blend weights) for a small machine.
    tune_quick: bool = False

    # Tracked experiments (models/tracking.py): every train and tune run, and each publish,
    # logged to MLflow. tracking.uri "": a SQLite store in the warehouse (mlflow.db, its
    # artifacts in mlartifacts/, what `make mlflow` opens); else a tracking server
    # (http://host:5000, its credentials in MLFLOW_TRACKING_USERNAME/_PASSWORD) or a
    # database URI. A store that cannot be reached is a warning, never a failed night.
    tracking_uri: str = field(default="", repr=False)
    tracking_experiment: str = "shoprecs"
    tracking_enabled: bool = True

    gate_metric: str = "map"
    gate_mode: str = "all"
    gate_min_ratio_over_popularity: float = 1.0
    gate_max_drop: float = 0.10

    service_host: str = "127.0.0.1"
    service_port: int = 8080
    # Snapshot lookups hold the GIL: on 2 cores 2-4 workers answered most, with the
    # shortest tail (bench/RESULTS.md). Serving from MongoDB waits on the network: more.
    service_threads: int = 4
    # Processes, each with service.threads threads, on one port (service/workers.py): one
    # process is bound by its GIL, so give it one per core you give the service.
    service_workers: int = 1
    # Where the pipeline asks a running service to reload (POST <url>/admin/reload);
    # empty: nobody is told, the service notices serving/CURRENT on its own.
    service_url: str = ""
    # Hosting (service/server.py): CherryPy worker threads above; then the listen backlog,
    # connections accepted but waiting for a worker, idle keep-alive connections kept.
    service_socket_queue_size: int = 128
    service_accepted_queue_size: int = 256
    service_keepalive_limit: int = 256
    service_socket_timeout: float = 10.0  # an idle connection is closed after this long
    # a request must arrive whole (head and body) this many seconds after its first byte,
    # else 408; until then it waits without holding a thread (service/connections.py)
    service_request_timeout: float = 5.0
    service_shutdown_timeout: float = 10.0  # SIGTERM: how long requests in flight may finish
    # proxies in front of the service (IP addresses or networks, comma-separated) whose
    # X-Forwarded-For names the client, in the access log and the rate limits; none: the
    # header is ignored (a client can write anything in it)
    service_trusted_proxies: str = ""
    service_max_body_bytes: int = 65536
    service_max_header_bytes: int = 16384
    service_reload_interval: float = 10.0  # seconds between looks at serving/CURRENT; 0: never
    # seconds between a worker's looks at the catalog refresh and the blacklist (a stat of
    # two files, on the request path): how soon a change reaches every worker
    service_rules_interval: float = 2.0

    # What the storefront was shown and what shoppers did (engine/events.py): written to
    # events/ in the warehouse by a thread per worker every events.interval seconds; past
    # events.max_pending queued events (a slow disk) the rest are dropped and counted.
    events_enabled: bool = True
    events_interval: float = 0.5
    events_max_pending: int = 50_000
    # POST /events: events per client (its API key, else its address) in each worker
    # process, in the `limits` notation ("300/second"; "" for none), and the feedback
    # written per UTC day across the service (0 for no cap); past either: 429 + Retry-After
    events_rate_limit: str = "300/second"
    events_max_feedback_mb_per_day: float = 200.0
    # An A/B test (experiments/arms.py): arms "arm:variant:share, ..." (variants: model,
    # popular), shares summing to 100; no name, no experiment.
    experiment_name: str = ""
    experiment_arms: str = ""
    # The nightly attribution (experiments/attribution.py): an order counts for an impression
    # that showed one of its goods to the same shopper at most window_hours before it;
    # each night reports the impressions of its last attribution.days days.
    attribution_window_hours: float = 24.0
    attribution_days: int = 28

    # API keys, comma-separated (header X-API-Key). Admin endpoints (POST /admin/reload)
    # need one of admin.api_keys and are disabled while it is empty; storefront endpoints
    # need one of storefront.api_keys only when it is set.
    admin_api_keys: str = field(default="", repr=False)
    storefront_api_keys: str = field(default="", repr=False)

    # Failed pipeline tasks are POSTed here as JSON (besides the log); empty: log only.
    alert_webhook_url: str = field(default="", repr=False)  # may embed a token

    # Stores (README, "MongoDB store"). publish.store: where `shoprecs publish` writes a
    # version: "snapshot" (serving/ folder), "mongo" or "both"; service.store: where the
    # service reads it from: "snapshot" or "mongo".
    publish_store: str = "snapshot"
    # One writing run at a time per warehouse (core/locks.py): a second waits this many
    # seconds for the first to finish, then fails with exit code 7; 0 fails at once.
    lock_wait_seconds: float = 3600.0
    # How long a MongoDB lock document outlives a holder that stopped renewing it (killed).
    lock_lease_seconds: float = 60.0
    service_store: str = "snapshot"
    mongo_uri: str = field(default="", repr=False)  # mongodb://user:password@host/...
    mongo_db: str = "shoprecs"
    mongo_keep_versions: int = 3  # complete versions kept; current and previous always are
    mongo_batch_size: int = 1000  # documents per unordered bulk insert
    mongo_cache_size: int = 100_000  # LRU entries per lookup kind in each service process

    @property
    def warehouse(self) -> Path:
        return Path(self.warehouse_root)

    @property
    def hmac_keys(self) -> tuple[str, ...]:
        """The key chain shoppers are keyed with: privacy.hmac_key, then each rotation."""
        rotations = [k.strip() for k in self.privacy_key_rotations.split(",") if k.strip()]
        return (self.privacy_hmac_key, *rotations)


_KINDS = {"int": int, "float": float, "bool": bool, "str": str}


def _coerce(value: str, target: type | str) -> object:
    kind = target if isinstance(target, str) else target.__name__
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value


def _setting(name: str) -> str:
    section, _, key = name.partition("_")
    return f"{section}.{key} (SHOPRECS_{name.upper()})"


def load(path: str | os.PathLike | None = None, env: dict | None = None) -> Settings:
    """Settings from defaults, then the TOML file at `path`/$SHOPRECS_CONFIG, then env.
    ConfigError (core/errors.py) names a file or a value that cannot be used."""
    env = os.environ if env is None else env
    path = path or env.get("SHOPRECS_CONFIG")
    values: dict[str, object] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if path:
        try:
            with open(path, "rb") as fh:
                document = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"configuration file {path}: {exc.strerror}; check --config "
                              "or SHOPRECS_CONFIG") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not TOML: {exc}") from None
        for section, items in document.items():
            if not isinstance(items, dict):
                raise ConfigError(f"{path}: {section} = ... must be inside a [section]")
            for key, value in items.items():
                name = f"{section}_{key}"
                if name not in fields:
                    raise ConfigError(f"{path}: unknown setting [{section}] {key} "
                                      "(docs/configuration.md lists them)")
                kind = _KINDS.get(str(fields[name].type))
                if kind is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                if kind is not None and type(value) is not kind:
                    article = "an" if kind.__name__[0] in "aeiou" else "a"
                    raise ConfigError(f"{path}: [{section}] {key} = {value!r} must be "
                                      f"{article} {kind.__name__}")
                values[name] = value
    for name, f in fields.items():
        raw = env.get(f"SHOPRECS_{name.upper()}")
        if raw is not None:
            try:
                values[name] = _coerce(raw, f.type)
            except ValueError:
                raise ConfigError(f"SHOPRECS_{name.upper()}={raw!r} is not a valid "
                                  f"{f.type} for {_setting(name)}") from None
    settings = Settings(**values)
    if settings.privacy_hmac_key == DEV_HMAC_KEY:
        log.warning("privacy.hmac_key is the development key; set SHOPRECS_PRIVACY_HMAC_KEY")
    return settings
