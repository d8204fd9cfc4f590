"""Configuration in typed sections: defaults, then a TOML file, then `SHOPRECS_*` variables.

The file is `$SHOPRECS_CONFIG` (or `--config` on the command line) and uses sections:

    [warehouse]
    root = "/data/shoprecs"
    [bus]
    url = "https://bus.example.com"
    user = "shoprecs"            # the password comes from SHOPRECS_BUS_PASSWORD

Every key is also settable as an environment variable `SHOPRECS_<SECTION>_<KEY>`, e.g.
`SHOPRECS_BUS_URL`, `SHOPRECS_PRIVACY_HMAC_KEY`; the environment wins over the file.
pydantic-settings reads both into one section model each (`settings.bus`, `settings.service`,
...), which a component takes whole; a value that breaks its rule, or a key that does not
exist, is one ConfigError naming the key, the value and what is allowed. Each field's
description is its documentation: docs/configuration.md's reference is `reference()`
(`python -m core.config`), and a test holds the two together.
"""
from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from core.errors import ConfigError

log = logging.getLogger(__name__)

#: Used only when no key is configured; fine for the demo, never for real shoppers.
DEV_HMAC_KEY = "shoprecs-development-key-change-me"
Secret = Annotated[str, Field(repr=False)]
# API keys: "k1,k2" (the environment's form) or, in the file, a TOML list of strings
Keys = Annotated[Secret, BeforeValidator(
    lambda v: ",".join(v) if isinstance(v, list) and all(isinstance(k, str) for k in v)
    else v)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Warehouse(Section):
    root: Path = Field(Path("var/warehouse"), description="the warehouse: a local folder "
                       "(any Spark-readable URI for Spark's own reads)")


class Bus(Section):
    """The order bus and its profile: how this shop's bus names things (docs/bus.md)."""

    url: str = Field("http://127.0.0.1:8765", description="the bus's base URL")
    user: str = Field("shoprecs", description="Basic auth user")
    password: Secret = Field("shoprecs", description="Basic auth password (environment)")
    per_page: int = Field(100, ge=1, description="orders per page asked for")
    workers: int = Field(8, ge=1, description="pages fetched at once")
    timeout: float = Field(30.0, gt=0, description="seconds per request")
    retries: int = Field(5, ge=0, description="retries of a failed request")
    lookback_days: int = Field(3, ge=0, description="each night fetches this many days "
                               "before it again: orders listed late land in their own day")
    orders_path: str = Field("/orders", description="the orders' path")
    goods_path: str = Field("/goods", description="the catalog's path")
    page_param: str = Field("page", description="the page number's parameter")
    per_page_param: str = Field("per-page", description="the page size's parameter")
    expand: str = Field("expand=basket", description="what makes orders carry their basket")
    orders_key: str = Field("orders", description="the orders' key in a page")
    goods_key: str = Field("goods", description="the goods' key in a catalog page")
    page_count_key: str = Field("pageCount", description="the page count's key")
    date_filter: str = Field("from,to", description='the date filter\'s parameters: two '
                             'names (a range), one (a lower bound) or "none"')
    date_filter_format: str = Field("%Y-%m-%d", description='strftime of the filter\'s '
                                    'values, or "epoch"')
    order_sort: Literal["asc", "desc", "none"] = Field(
        "asc", description="without a date filter, how /orders is sorted by date")
    date_field: str = Field("date", description='the order\'s date; "" when orders carry none')
    date_format: str = Field("iso", description="iso, epoch, epoch_ms, or a strftime pattern")
    timezone: str = Field("UTC", description="what a date without an offset means")
    phone_field: str = Field("clientTel", description="the order's phone")
    source_field: str = Field("", description='e.g. "source": kept with each clean line')


@functools.cache
def _warn_development_key() -> None:
    log.warning("privacy.hmac_key is the development key, which anyone can read: fine for "
                "the demo, but set SHOPRECS_PRIVACY_HMAC_KEY to a secret of your own before "
                "a real shop's phones are keyed (docs/privacy.md)")


class Privacy(Section):
    hmac_key: Secret = Field(DEV_HMAC_KEY, min_length=1, description="the key phones are "
                             "keyed with (SHOPRECS_PRIVACY_HMAC_KEY; the default: the demo's)")
    key_rotations: Secret = Field("", description="keys added by `shoprecs rotate-key`, "
                                  "oldest first, comma-separated (docs/privacy.md)")
    new_key: Secret = Field("", description="the key `shoprecs rotate-key` re-keys to; "
                            "give it in the environment only (SHOPRECS_PRIVACY_NEW_KEY)")
    raw_retention_days: int = Field(30, ge=0, description="landed orders older than this, "
                                    "once cleaned, keep only each order's key; 0: forever")

    @property
    def keys(self) -> tuple[str, ...]:
        """The key chain shoppers are keyed with: hmac_key, then each rotation. Keying with
        the development key warns (once a process), where keying happens and nowhere else."""
        if self.hmac_key == DEV_HMAC_KEY:
            _warn_development_key()
        return (self.hmac_key, *(k.strip() for k in self.key_rotations.split(",")
                                 if k.strip()))


class Phone(Section):
    country_code: str = Field("7", pattern=r"^\d{1,3}$", description="the default country")
    trunk_prefix: str = Field("8", pattern=r"^\d?$", description="the national trunk prefix")
    national_length: int = Field(10, ge=4, le=14, description="digits of a national number")
    placeholders: str = Field(r"^(1234567890|0123456789|9876543210|(\d)\2{9})$",
                              description="national numbers nobody owns (a regular "
                              "expression): their orders are kept as guest orders")
    max_orders_per_day: int = Field(50, ge=0, description="a phone with more orders on one "
                                    "day is nobody's either; 0: no limit")


class Train(Section):
    window_days: int = Field(90, ge=1, description="the fits' window; shoppers' own signals "
                             "use their whole history")
    holdout_days: int = Field(7, ge=0, description="the window's last days, held out to "
                              "evaluate and choose")
    top_k: int = Field(50, ge=1, description="recommendations stored per shopper (and again "
                       "of goods new to them)")


class FPGrowth(Section):
    min_support: float = Field(0.0, ge=0, le=1, description="0: what min_baskets baskets "
                               "make, within [0.001, 0.05]")
    min_confidence: float = Field(0.05, ge=0, le=1, description="rules kept")
    min_baskets: int = Field(50, ge=1, description="baskets an itemset needs at min_support 0")
    max_basket_items: int = Field(100, ge=0, description="bulk orders with more goods are not "
                                  "mined; 0: mine all")
    max_itemsets: int = Field(200_000, ge=1, description="more itemsets than this: "
                              "minSupport doubled, with a warning")
    partitions: int = Field(0, ge=0, description="item groups mined in parallel; 0: Spark's")


class Tune(Section):
    quick: bool = Field(False, description="a smaller search (2 ALS settings, a fifth of the "
                        "blends) for a small machine")


class Tracking(Section):
    uri: Secret = Field("", description='"": <warehouse>/mlflow.db; else a tracking server '
                        "or a database URI")
    experiment: str = Field("shoprecs", description="the MLflow experiment of every run")
    enabled: bool = Field(True, description="false: nothing logged, mlflow not imported")


class Gate(Section):
    metric: Literal["map", "ndcg", "precision", "recall"] = Field(
        "map", description="at 10; also what the holdout chooses by")
    mode: Literal["all", "new"] = Field("all", description="all purchases, or new goods only")
    min_ratio_over_popularity: float = Field(1.0, ge=0, description="must beat popularity "
                                             "times this")
    max_drop: float = Field(0.10, ge=0, le=1, description="at most this far below the "
                            "version served")


class Service(Section):
    host: str = Field("127.0.0.1", description="the interface to listen on")
    port: int = Field(8080, ge=0, le=65535, description="the port")
    threads: int = Field(4, ge=1, description="worker threads per process")
    workers: int = Field(1, ge=1, description="processes on the port, one per core")
    url: str = Field("", description="where the night asks the service to reload; \"\": "
                     "nobody is told (the service polls)")
    store: Literal["snapshot", "mongo"] = Field("snapshot", description="where the service "
                                                "reads versions from")
    socket_queue_size: int = Field(128, ge=1, description="the listen backlog")
    accepted_queue_size: int = Field(256, ge=1, description="accepted connections waiting "
                                     "for a thread")
    keepalive_limit: int = Field(256, ge=1, description="idle keep-alive connections kept")
    socket_timeout: float = Field(10.0, gt=0, description="an idle connection is closed "
                                  "after this long")
    request_timeout: float = Field(5.0, gt=0, description="a request must arrive whole this "
                                   "long after its first byte, else 408")
    shutdown_timeout: float = Field(10.0, ge=0, description="SIGTERM: how long requests in "
                                    "flight may finish")
    trusted_proxies: str = Field("", description="proxies whose X-Forwarded-For names the "
                                 "client (addresses or networks, comma-separated)")
    max_body_bytes: int = Field(65536, ge=1, description="a larger body is a 413")
    max_header_bytes: int = Field(16384, ge=1024, description="a larger head is refused")
    reload_interval: float = Field(10.0, ge=0, description="seconds between looks at "
                                   "serving/CURRENT; 0: only on SIGHUP or POST /admin/reload")
    rules_interval: float = Field(2.0, ge=0, description="seconds between a worker's looks "
                                  "at the catalog refresh and the blacklist")


class Events(Section):
    enabled: bool = Field(True, description="impressions and feedback written to events/")
    interval: float = Field(0.5, gt=0, description="seconds between a worker's writes (what "
                            "a SIGKILL may lose)")
    max_pending: int = Field(50_000, ge=0, description="queued events per worker before new "
                             "ones are dropped (counted)")
    rate_limit: str = Field("300/second", description='POST /events per client and worker '
                            'process ("300/second"; "": none)')
    max_feedback_mb_per_day: float = Field(200.0, ge=0, description="feedback written per "
                                           "UTC day; 0: no cap")


class Experiment(Section):
    name: str = Field("", description="an A/B test's name; \"\": none")
    arms: str = Field("", description='"control:model:50, popular:popular:50" (variants: '
                      "model, popular)")


class Attribution(Section):
    window_hours: float = Field(24.0, gt=0, description="an order counts for an impression "
                                "this long before it")
    days: int = Field(28, ge=1, description="each night reports the impressions of its last "
                      "days")


class AdminKeys(Section):
    api_keys: Keys = Field("", description="comma-separated or a list (header X-API-Key); "
                           "/admin/* is disabled while none is set")


class StorefrontKeys(Section):
    api_keys: Keys = Field("", description="comma-separated or a list; none: the storefront "
                           "routes are open to anyone (docs/security.md)")


class Alert(Section):
    webhook_url: Secret = Field("", description="failed night steps POSTed here as JSON")


class Publish(Section):
    store: Literal["snapshot", "mongo", "both"] = Field(
        "snapshot", description="where `shoprecs publish` writes a version")


class Lock(Section):
    wait_seconds: float = Field(3600.0, ge=0, description="a second run waits this long for "
                                "the first, then exits 7")
    lease_seconds: float = Field(60.0, gt=0, description="how long a MongoDB lock outlives a "
                                 "holder that stopped renewing it")


class Mongo(Section):
    uri: Secret = Field("", description="mongodb://user:password@host/...")
    db: str = Field("shoprecs", description="the database")
    keep_versions: int = Field(3, ge=1, description="complete versions kept (current and "
                               "previous always)")
    batch_size: int = Field(1000, ge=1, description="documents per bulk insert")
    cache_size: int = Field(100_000, ge=0, description="LRU entries per lookup kind in each "
                            "service process")


class Settings(BaseSettings):
    """Every setting, by section: `settings.bus.url`; `settings.warehouse.root` (a Path,
    also `settings.root`)."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPRECS_", env_nested_delimiter="_", env_nested_max_split=1,
        extra="forbid", frozen=True, case_sensitive=False)

    warehouse: Warehouse = Warehouse()
    bus: Bus = Bus()
    privacy: Privacy = Privacy()
    phone: Phone = Phone()
    train: Train = Train()
    fpgrowth: FPGrowth = FPGrowth()
    tune: Tune = Tune()
    tracking: Tracking = Tracking()
    gate: Gate = Gate()
    service: Service = Service()
    events: Events = Events()
    experiment: Experiment = Experiment()
    attribution: Attribution = Attribution()
    admin: AdminKeys = AdminKeys()
    storefront: StorefrontKeys = StorefrontKeys()
    alert: Alert = Alert()
    publish: Publish = Publish()
    lock: Lock = Lock()
    mongo: Mongo = Mongo()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        """When `load` builds them: the arguments, then the environment, then the TOML
        file it was given. Else (`Settings()`) the arguments and the defaults alone."""
        reading = _reading.get()
        if reading is None:
            return (init_settings,)
        environ, toml = reading
        if environ is not None:  # load(env=...): those variables instead of os.environ's
            env_settings.env_vars = {k.lower(): v for k, v in environ.items()}
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml)

    @property
    def root(self) -> Path:
        """The warehouse's folder."""
        return self.warehouse.root

    def replace(self, **changes: Any) -> Settings:
        """These settings with `changes` named as the environment names them, less the
        prefix (`bus_url=...` for SHOPRECS_BUS_URL), each checked as the file's are."""
        values = self.model_dump()
        for name, value in changes.items():
            section, _, key = name.partition("_")
            if section not in values:
                raise ConfigError(f"unknown setting {name}: no section {section!r}")
            values[section][key] = value
        try:
            return type(self)(**values)  # outside `load`: these values alone
        except ValidationError as exc:
            raise ConfigError(_message(exc, None)) from None


# what `load` has the settings read: (an environment other than os.environ, a TOML file);
# None outside `load`: defaults only
_reading: ContextVar[tuple[Mapping | None, str | None] | None] = ContextVar(
    "shoprecs_config_reading", default=None)


def _message(exc: ValidationError, path) -> str:
    """One line: the key, the value given, and what is allowed."""
    found = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        env = "SHOPRECS_" + "_".join(loc).upper()
        if error["type"] == "extra_forbidden":
            found.append(f"unknown setting {key} (docs/configuration.md lists them)")
            continue
        given = "" if str(loc[-1]) in ("password", "hmac_key", "key_rotations", "uri",
                                       "api_keys", "webhook_url") else f" = {error['input']!r}"
        found.append(f"{key}{given} ({env}): {error['msg'].lower()}")
    where = f"configuration {path}: " if path else ""
    return where + "; ".join(found)


def load(path: str | os.PathLike | None = None, env: Mapping | None = None) -> Settings:
    """Settings from defaults, then the TOML file at `path`/$SHOPRECS_CONFIG, then the
    environment (`env`, default os.environ). ConfigError names a file or a value that
    cannot be used."""
    path = path or (os.environ if env is None else env).get("SHOPRECS_CONFIG")
    if path and not os.path.isfile(path):
        raise ConfigError(f"configuration file {path} does not exist; check --config or "
                          "SHOPRECS_CONFIG")
    token = _reading.set((env, str(path) if path else None))
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_message(exc, path)) from None
    except ValueError as exc:  # the TOML itself
        raise ConfigError(f"configuration file {path} is not TOML: {exc}") from None
    finally:
        _reading.reset(token)


def reference(sections: list[str] | None = None) -> str:
    """`sections` (default: all) of the settings as TOML, each key with its default and its
    description: the blocks docs/ shows between `<!-- settings: ... -->` markers
    (tests/core/test_config.py checks they are these)."""
    lines = []
    for name in sections or list(Settings.model_fields):
        lines.append(f"[{name}]")
        for key, spec in Settings.model_fields[name].annotation.model_fields.items():
            default = spec.default
            shown = (str(default).lower() if isinstance(default, bool)
                     else f'"{default}"' if isinstance(default, str | Path) else repr(default))
            if spec.repr is False and default:
                shown = '"..."'  # a secret's default is not shown
            lines.append(f"{key} = {shown}".ljust(34) + f"# {spec.description}")
    return "\n".join(lines)


MARKER = re.compile(r"(<!-- settings: ([a-z ]+) -->\n```toml\n)(.*?)(\n```)", re.S)


def documented(text: str) -> str:
    """`text` (a page of docs/) with each `<!-- settings: section ... -->` block made
    `reference` of those sections."""
    return MARKER.sub(lambda m: m.group(1) + reference(m.group(2).split()) + m.group(4), text)


if __name__ == "__main__":  # `make docs`: the settings blocks of docs/ made again
    for page in sorted(Path("docs").glob("*.md")):
        page.write_text(documented(page.read_text()))
