"""Data faults a real order bus shows, injected into a clean order list, with the truth.

`inject(orders, DataFaults(...))` returns what the simulator should serve and the
ground truth of what a correct pipeline must end up with: every order id once, in its
latest version, with exactly its valid lines. Faults (each a share of orders):

* `dup_pages`: the same order listed twice on one day (on another page, or the same);
* `dup_days`: the same order listed again on the next day;
* `resend`: the order re-sent later the same day with a changed basket (latest wins);
* `no_phone`: the phone missing or blank (kept as a guest order);
* `bad_lines`: an extra line with quantity 0, a negative or non-numeric quantity, or no
  goodsId (the line is quarantined, the rest of the order kept);
* `bad_orders`: an order whose date or phone is garbage (quarantined whole);
* `late`: the order listed on the bus only `late_days` days after its date (sites that
  sync late, stores that upload at night): the simulator hides it until then;
* `placeholder`: the phone is the bus's own placeholder `+7 (123) 456-7890` (kept as a
  guest order: `GroundTruth.guests`).
"""
from __future__ import annotations

import copy
import datetime as dt
import random
from dataclasses import dataclass, field

from core.phones import InvalidPhone, normalize


@dataclass(frozen=True)
class DataFaults:
    dup_pages: float = 0.0
    dup_days: float = 0.0
    resend: float = 0.0
    no_phone: float = 0.0
    bad_lines: float = 0.0
    bad_orders: float = 0.0
    seed: int = 1
    late: float = 0.0
    late_days: int = 2
    placeholder: float = 0.0

    @classmethod
    def all(cls, rate: float = 0.05, seed: int = 1) -> DataFaults:
        return cls(rate, rate, rate, rate, rate, rate, seed)


@dataclass
class GroundTruth:
    """order id -> {goods id: quantity} of its valid lines, and the ids that must be
    quarantined whole."""

    orders: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantined_orders: set[str] = field(default_factory=set)
    guests: set[str] = field(default_factory=set)  # valid orders kept without a shopper
    late: set[str] = field(default_factory=set)  # listed days after their date
    bad_lines: set[str] = field(default_factory=set)  # kept, but with a line quarantined


def _line_ok(line: dict) -> bool:
    q, g = line.get("quantity"), line.get("goodsId")
    return isinstance(q, int) and q > 0 and g not in (None, "")


def _lines(order: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in order.get("basket") or []:
        if _line_ok(line):
            g = str(line["goodsId"])
            out[g] = out.get(g, 0) + line["quantity"]
    return out


def _valid(order: dict) -> bool:
    try:
        dt.datetime.fromisoformat(order["date"])
    except (TypeError, ValueError):
        return False
    if order.get("clientTel") and order["clientTel"].strip(" "):
        try:
            normalize(order["clientTel"])
        except InvalidPhone:
            return False
    return bool(_lines(order))


_BAD_LINES = [{"goodsId": 1, "quantity": 0}, {"goodsId": 2, "quantity": -3},
              {"goodsId": 3, "quantity": "two"}, {"quantity": 1}]


def inject(orders: list[dict], faults: DataFaults) -> tuple[list[dict], GroundTruth]:
    rng = random.Random(faults.seed)
    served: list[dict] = []
    extra: list[dict] = []
    for original in orders:
        order = copy.deepcopy(original)
        if rng.random() < faults.no_phone:
            order["clientTel"] = rng.choice([None, "", "  "])
        if rng.random() < faults.bad_lines:
            order["basket"].append(dict(rng.choice(_BAD_LINES), price=1.0))
        if faults.placeholder and rng.random() < faults.placeholder:
            order["clientTel"] = "+7 (123) 456-7890"
        if faults.late and rng.random() < faults.late:
            listed = dt.datetime.fromisoformat(order["date"]) + dt.timedelta(days=faults.late_days)
            order["_listed"] = listed.isoformat()
        if rng.random() < faults.bad_orders:
            if rng.random() < 0.5:
                order["date"] = order["date"][:10] + "T25:61:00"  # listed on its day, unparseable
            else:
                order["clientTel"] = "+7 (9O5) call me"
        served.append(order)
        if rng.random() < faults.dup_pages:
            extra.append(copy.deepcopy(order))
        if rng.random() < faults.dup_days:
            when = dt.datetime.fromisoformat(original["date"]) + dt.timedelta(days=1)
            extra.append({**copy.deepcopy(order), "date": when.isoformat()})
        if rng.random() < faults.resend and len(order["basket"]) > 0:
            changed = copy.deepcopy(order)
            changed["basket"][0]["quantity"] = changed["basket"][0]["quantity"] + 1
            extra.append(changed)
    served.extend(extra)  # after the originals: a stable sort by date keeps them later
    truth = GroundTruth()
    latest: dict[str, dict] = {}  # order id -> its last valid version
    # The bus lists by date (a stable sort): the last version of an id in that order wins.
    for order in sorted(served, key=lambda o: o["date"]):
        oid = str(order["id"])
        if _valid(order):
            latest[oid] = order
            truth.quarantined_orders.discard(oid)
            if order.get("_listed"):
                truth.late.add(oid)
        elif oid not in latest:
            truth.quarantined_orders.add(oid)
    truth.orders = {oid: _lines(o) for oid, o in latest.items()}
    truth.guests = {oid for oid, o in latest.items() if o.get("clientTel") == "+7 (123) 456-7890"}
    truth.bad_lines = {oid for oid, o in latest.items()
                       if not all(map(_line_ok, o.get("basket") or []))}
    return served, truth
