"""The shop's blacklist, for merchandisers and the shop's systems (admin API key).

    GET    /admin/blacklist             the goods never recommended, and the last changes
    PUT    /admin/blacklist/<goods_id>  add (or update) one, with a reason: {"reason": "..."}
    DELETE /admin/blacklist/<goods_id>  remove one

Stored with the warehouse (engine/shoprules.py: rules/blacklist.json, every change audited
in rules/audit.jsonl with the time, a digest of the key and what changed), or in MongoDB
when the service serves from it; this worker applies a change at once, every other worker
within service.rules_interval seconds.
"""
from __future__ import annotations

from typing import Annotated

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from engine.shoprules import MAX_REASON, key_id
from service.api import endpoint
from service.auth import given_key
from service.errors import ApiError

bp = Blueprint("shop", __name__)
GOODS = {"goods_id": ("goods id as in the catalog", "10082")}
_LIST = {"type": "object", "required": ["goods", "audit"], "properties": {
    "goods": {"type": "array", "items": {"type": "object"}},
    "audit": {"type": "array", "items": {"type": "object"}}}}
_ENTRY = {"type": "object", "required": ["goodsId"]}
MAX_GOODS_ID = 100


class BlacklistEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True,
                              json_schema_extra={"example": {"reason": "prescription only"}})
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=MAX_REASON)] = Field(
        description="why the goods must not be recommended")
    beforeListing: bool = Field(False, description="the goods is not in the served catalog "
                                "yet: store it anyway, so it never appears once listed")


def _goods_id(goods_id: str) -> str:
    """A goods id as the catalog writes them: 1 to MAX_GOODS_ID printable characters, no
    spaces or control characters."""
    if not 0 < len(goods_id) <= MAX_GOODS_ID or not goods_id.isprintable() \
            or any(c.isspace() for c in goods_id):
        raise ApiError(400, "invalid_goods_id", f"a goods id is 1 to {MAX_GOODS_ID} printable "
                       "characters without spaces")
    return goods_id


def _listed(goods_id: str, before_listing: bool) -> bool:
    """Whether the served catalog has the goods; 404 when it has not and the request did
    not say the goods is not listed yet."""
    served = current_app.extensions["shoprecs.holder"].engine
    if served is not None and served.has_product(goods_id):
        return True
    if not before_listing:
        raise ApiError(404, "unknown_product", f"no product {goods_id!r} in the served "
                       'catalog; to block goods before they are listed, send "beforeListing": '
                       "true")
    return False


def _change(action: str, goods_id: str, reason: str = "") -> dict | None:
    """Change the blacklist, audited under a digest of the admin's key (checked:
    service/auth.py), and apply the change in this worker at once."""
    rules = current_app.extensions["shoprecs.rules"]
    entry = rules.blacklist.change(action, goods_id, key_id(given_key()), reason)
    rules.refresh(force=True)
    return entry


def _entry(goods_id: str, entry: dict) -> dict:
    holder = current_app.extensions["shoprecs.holder"]
    name = holder.engine.name(goods_id) if holder.engine is not None else None
    return {"goodsId": goods_id, "name": name, "reason": entry.get("reason"),
            "addedAt": entry.get("added_at"), "by": entry.get("by")}


@endpoint(bp, "/admin/blacklist", access="admin", answer=_LIST, errors=(401, 403),
          summary="The goods never recommended (with why, when and by which key) and the "
                  "last 50 changes")
def blacklist():
    store = current_app.extensions["shoprecs.rules"].blacklist
    return jsonify(goods=[_entry(g, e) for g, e in sorted(store.read().items())],
                   audit=store.audit(50))


@endpoint(bp, "/admin/blacklist/<goods_id>", "PUT", access="admin", path=GOODS,
          body=BlacklistEntry, answer=_ENTRY, errors=(400, 401, 403, 404, 415),
          summary="Never recommend this goods again (no retrain; every worker within "
                  "seconds)")
def blacklist_add(goods_id: str, body: BlacklistEntry):
    goods_id = _goods_id(goods_id)
    listed = _listed(goods_id, body.beforeListing)
    entry = _change("add", goods_id, body.reason)
    return jsonify(**_entry(goods_id, entry), inCatalog=listed)


@endpoint(bp, "/admin/blacklist/<goods_id>", "DELETE", access="admin", path=GOODS,
          answer={"type": "object", "required": ["goodsId", "removed"]},
          errors=(400, 401, 403), summary="Recommend this goods again")
def blacklist_remove(goods_id: str):
    goods_id = _goods_id(goods_id)
    removed = _change("remove", goods_id)
    return jsonify(goodsId=goods_id, removed=removed is not None)
