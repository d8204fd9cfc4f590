"""Orders and goods from a file in the UCI Online Retail CSV format, as the bus serves them.

One invoice is one order (InvoiceNo its id, StockCode the goodsId, Description the name);
CustomerID c becomes the phone `79` + c zero-padded to nine digits, shown in one of the
four bus formats (chosen by invoice so reruns are stable); no CustomerID, no phone.
Lines are passed through as the file has them (returns and cancellations included): the
cleaning job decides what to keep.
"""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

from simulation.generator import format_phone


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        return text  # passed on as sent: the cleaner quarantines it


def load_retail(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(orders sorted by date, goods) from an Online Retail CSV (optionally gzipped)."""
    orders: dict[str, dict] = {}
    names: dict[str, str] = {}
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            invoice = row["InvoiceNo"]
            order = orders.get(invoice)
            if order is None:
                customer = row["CustomerID"].strip()
                phone = (format_phone(f"79{int(float(customer)):09d}", sum(map(ord, invoice)) % 4)
                         if customer else None)
                order = orders[invoice] = {"id": invoice,
                                           "date": row["InvoiceDate"].replace(" ", "T"),
                                           "clientTel": phone, "basket": []}
            order["basket"].append({"goodsId": row["StockCode"],
                                    "quantity": _number(row["Quantity"], int),
                                    "price": _number(row["UnitPrice"], float)})
            if row["Description"]:
                names[row["StockCode"]] = row["Description"]
    ordered = sorted(orders.values(), key=lambda o: o["date"])
    return ordered, [{"id": k, "name": v} for k, v in names.items()]
