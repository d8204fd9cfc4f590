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

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from engine.shoprules import MAX_REASON, key_id
from service.api import endpoint
from service.auth import HEADER, require_key
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


def _admin() -> str:
    given = request.headers.get(HEADER)
    require_key(given, current_app.extensions["shoprecs.admin_keys"], "admin",
                "SHOPRECS_ADMIN_API_KEYS")
    return key_id(given)


def _goods_id(goods_id: str) -> str:
    goods_id = goods_id.strip()
    if not goods_id or len(goods_id) > MAX_GOODS_ID:
        raise ApiError(400, "invalid_goods_id", f"a goods id is 1 to {MAX_GOODS_ID} "
                       "characters")
    return goods_id


def _store():
    return current_app.extensions["shoprecs.rules"].blacklist


def _applied() -> None:
    current_app.extensions["shoprecs.rules"].refresh(force=True)


def _entry(goods_id: str, entry: dict) -> dict:
    holder = current_app.extensions["shoprecs.holder"]
    name = holder.engine.name(goods_id) if holder.engine is not None else None
    return {"goodsId": goods_id, "name": name, "reason": entry.get("reason"),
            "addedAt": entry.get("added_at"), "by": entry.get("by")}


@endpoint(bp, "/admin/blacklist", admin=True, answer=_LIST, errors=(401, 403),
          summary="The goods never recommended (with why, when and by which key) and the "
                  "last 50 changes")
def blacklist():
    _admin()
    goods = _store().read()
    return jsonify(goods=[_entry(g, e) for g, e in sorted(goods.items())],
                   audit=_store().audit(50))


@endpoint(bp, "/admin/blacklist/<goods_id>", "PUT", admin=True, path=GOODS,
          body=BlacklistEntry, answer=_ENTRY, errors=(400, 401, 403),
          summary="Never recommend this goods again (no retrain; every worker within "
                  "seconds)")
def blacklist_add(goods_id: str, body: BlacklistEntry):
    by = _admin()
    goods_id = _goods_id(goods_id)
    entry = _store().change("add", goods_id, by, body.reason)
    _applied()
    return jsonify(_entry(goods_id, entry))


@endpoint(bp, "/admin/blacklist/<goods_id>", "DELETE", admin=True, path=GOODS,
          answer={"type": "object", "required": ["goodsId", "removed"]},
          errors=(400, 401, 403), summary="Recommend this goods again")
def blacklist_remove(goods_id: str):
    by = _admin()
    goods_id = _goods_id(goods_id)
    removed = _store().change("remove", goods_id, by)
    _applied()
    return jsonify(goodsId=goods_id, removed=removed is not None)
