"""How one shop's order bus names and formats things: the *bus profile* (`bus.*` settings).

The contract in docs/bus.md is the default profile. What a real bus is known to share is Basic
auth, `page`/`per-page`, `expand=basket`, `orders`/`pageCount` and the order fields `id`,
`clientTel`, `basket[].goodsId`, `basket[].quantity`; everything else may differ, so it is
configuration:

    [bus]
    date_filter = "from,to"     # the server-side date filter's parameters: two names (a
                                # range), one name (a lower bound, e.g. "updatedSince"), or
                                # "none" (the extractor pages and partitions by itself)
    date_filter_format = "%Y-%m-%d"   # strftime of the filter's values, or "epoch"
    order_sort = "asc"          # without a filter, how /orders is sorted by date: asc,
                                # desc or none (then every page is read every night)
    date_field = "date"         # the order's date; "" when orders carry none
    date_format = "iso"         # iso (an offset is honoured, else bus.timezone), epoch,
                                # epoch_ms, or a strftime pattern read in bus.timezone
    timezone = "UTC"
    phone_field = "clientTel"
    source_field = ""           # e.g. "source" or "storeId": kept with each clean line
    page_param = "page"; per_page_param = "per-page"; expand = "expand=basket"
    orders_key = "orders"; goods_key = "goods"; page_count_key = "pageCount"

`order_time` is the one reading of an order's date: the extractor partitions and stops by
it, and the cleaning job calls it (a pandas UDF), so the two never disagree.
"""
from __future__ import annotations

import datetime as dt
from functools import cached_property
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.config import Bus
from core.errors import ConfigError

DATE_FORMATS = ("iso", "epoch", "epoch_ms")


class BusProfile(Bus):
    """The [bus] section (its fields and defaults, checked as the configuration checks
    them), with the reading of its profile."""

    @classmethod
    def from_settings(cls, bus) -> BusProfile:
        """The profile of the [bus] section, without its password (a profile travels to
        Spark's executors; the bus client takes the password from the section)."""
        profile = cls(**{name: value for name, value in bus if name != "password"})
        profile.check()
        return profile

    def check(self) -> None:
        """ConfigError naming the setting, for a profile that cannot work."""
        if self.date_filter.strip().lower() != "none" and not self.filter_params:
            raise ConfigError('bus.date_filter is empty: write "from,to", one parameter '
                              'name, or "none"')
        if len(self.filter_params) > 2:
            raise ConfigError(f"bus.date_filter {self.date_filter!r}: at most two names")
        if not self.date_field and not self.filter_params:
            raise ConfigError("bus.date_field is empty and bus.date_filter is none: nothing "
                              "tells an order's day; name the orders' date field "
                              "(bus.date_field) or the bus's date filter (bus.date_filter)")
        if not self.date_field and len(self.filter_params) == 1:
            raise ConfigError("bus.date_field is empty and bus.date_filter is a lower bound "
                              f"({self.date_filter}): orders of several days would arrive "
                              "undated; name the orders' date field (bus.date_field)")
        self.zone  # noqa: B018 - raises ConfigError for an unknown zone
        if self.date_format not in DATE_FORMATS and "%" not in self.date_format:
            raise ConfigError(f"bus.date_format is {self.date_format!r}: iso, epoch, "
                              "epoch_ms or a strftime pattern such as %d.%m.%Y %H:%M")

    @cached_property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"bus.timezone {self.timezone!r} is not a time zone name "
                              "(e.g. UTC, Europe/Moscow)") from None

    @property
    def filter_params(self) -> tuple[str, ...]:
        if self.date_filter.strip().lower() == "none":
            return ()
        return tuple(p.strip() for p in self.date_filter.split(",") if p.strip())

    @property
    def strategy(self) -> str:
        """range (a server-side from/to per day), since (a lower bound) or none."""
        return {0: "none", 1: "since", 2: "range"}[len(self.filter_params)]

    def filter_value(self, day: dt.date) -> str:
        if self.date_filter_format == "epoch":
            start = dt.datetime.combine(day, dt.time(), self.zone)
            return str(int(start.timestamp()))
        return day.strftime(self.date_filter_format)

    def range_params(self, first: dt.date, last: dt.date) -> dict[str, str]:
        """The query selecting orders of first..last (strategy range) or since first."""
        values = (self.filter_value(first), self.filter_value(last))
        return dict(zip(self.filter_params, values))  # one name: first only; none: {}

    def paging(self, page: int, per_page: int) -> dict[str, str | int]:
        return {self.page_param: page, self.per_page_param: per_page}

    @property
    def expand_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.expand)) if self.expand else {}

    def order_time(self, value) -> dt.datetime | None:
        """The order's date field as a naive UTC datetime; None when missing or unreadable."""
        if value is None or value == "" or isinstance(value, bool):
            return None
        try:
            if self.date_format in ("epoch", "epoch_ms"):
                seconds = float(value) / (1000 if self.date_format == "epoch_ms" else 1)
                return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)
            if not isinstance(value, str):
                return None
            if self.date_format == "iso":
                moment = dt.datetime.fromisoformat(value.strip())
            else:
                moment = dt.datetime.strptime(value.strip(), self.date_format)
        except (ValueError, OverflowError, OSError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(dt.UTC).replace(tzinfo=None)

    def order_day(self, order: dict) -> dt.date | None:
        moment = self.order_time(order.get(self.date_field)) if self.date_field else None
        return None if moment is None else moment.date()
