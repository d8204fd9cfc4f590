"""The OpenAPI 3.0 document served at /openapi.json: what the service really does.

Written by hand next to the routes; tests/service/test_fuzz.py runs schemathesis against
it (every documented status, content type and response schema) to keep both honest.
"""
from __future__ import annotations

_ERROR = {"$ref": "#/components/responses/Error"}
_GOODS_ID = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
_ITEMS = {"type": "array", "items": {"type": "object", "required": ["goodsId", "name"],
                                     "properties": {
    "goodsId": _GOODS_ID, "rating": {"type": "number"}, "score": {"type": "number"},
    "name": {"type": "string", "nullable": True},
    "because": {"type": "array", "items": _GOODS_ID}}}}
_RULES = {"type": "array", "items": {"type": "object", "required": [
    "antecedent", "consequent", "confidence", "lift", "support"], "properties": {
    "antecedent": {"type": "array", "items": _GOODS_ID},
    "consequent": {"type": "array", "items": _GOODS_ID},
    "consequentNames": {"type": "array", "items": {"type": "string", "nullable": True}},
    "confidence": {"type": "number"}, "lift": {"type": "number"}, "support": {"type": "number"}}}}
_LIMIT = {"name": "limit", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}}
_VERSION = {"X-Model-Version": {"schema": {"type": "string"}, "description": "version served"}}
_SOURCE = {"X-Recommendation-Source": {"schema": {"type": "string"}}}
_LOOKUP_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR, "503": _ERROR}


def _ok(schema: dict, headers: dict | None = None, text: str = "OK") -> dict:
    return {"description": text, "headers": headers or {},
            "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, text: str, example: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": text,
            "schema": {"type": "string"}, "example": example}


def _paths() -> dict:
    goods = _path_param("goods_id", "goods id as in the catalog", "10082")
    return {
        "/users/{phone}/recommendations": {"get": {
            "summary": "Recommendations for a shopper; popular goods for unknown shoppers",
            "parameters": [_path_param("phone", "phone in any format", "+7 (916) 539-6205"),
                           _LIMIT, {"name": "exclude_bought", "in": "query", "schema": {
                               "type": "string", "enum": ["true", "false", "1", "0"]}}],
            "responses": {"200": _ok(_ITEMS, {**_VERSION, **_SOURCE}), **_LOOKUP_ERRORS}}},
        "/products/{goods_id}/associations": {"get": {
            "summary": "Association rules whose antecedent is this product",
            "parameters": [goods, _LIMIT, {"name": "min_confidence", "in": "query", "schema": {
                "type": "number", "minimum": 0, "maximum": 1}},
                {"name": "sort", "in": "query", "schema": {
                    "type": "string", "enum": ["confidence", "lift"]}}],
            "responses": {"200": _ok(_RULES, _VERSION), **_LOOKUP_ERRORS}}},
        "/products/{goods_id}/similar": {"get": {
            "summary": "Goods nearest to this one by ALS item factors",
            "parameters": [goods, _LIMIT],
            "responses": {"200": _ok(_ITEMS, _VERSION), **_LOOKUP_ERRORS}}},
        "/recommendations/basket": {"post": {
            "summary": "What to add to a cart: rules, else similar goods, else popular goods",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["items"], "properties": {
                    "items": {"type": "array", "minItems": 1, "maxItems": 100,
                              "items": _GOODS_ID},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100}},
                "example": {"items": [10082, 10071], "limit": 10}}}}},
            "responses": {"200": _ok(_ITEMS, {**_VERSION, **_SOURCE}),
                          "413": _ERROR, **_LOOKUP_ERRORS}}},
        "/models": {"get": {"summary": "The version served and its training metrics",
                            "responses": {"200": _ok({"type": "object", "required": ["version"]}),
                                          "503": _ERROR}}},
        "/health": {"get": {"summary": "Liveness", "responses": {"200": _ok({"type": "object"})}}},
        "/ready": {"get": {"summary": "Readiness: a snapshot is loaded and the server started",
                           "responses": {"200": _ok({"type": "object"}),
                                         "503": _ok({"type": "object"}, text="not ready")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/admin/reload": {"post": {
            "summary": "Load serving/CURRENT now (needs an admin X-API-Key)",
            "security": [{"apiKey": []}],
            "responses": {"200": _ok({"type": "object", "required": ["status"]}),
                          "401": _ERROR, "403": _ERROR, "409": _ERROR}}},
    }


def document() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "shoprecs", "version": "1",
                 "description": "Product recommendations from the nightly published snapshot."},
        "paths": _paths(),
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {
                "schema": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}}}}}}}}}},
    }
