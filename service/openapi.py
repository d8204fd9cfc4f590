"""The OpenAPI 3.1 document served at /openapi.json, generated from service/api.py's SPECS.

Parameters, bodies and answers come from the pydantic models the routes validate with;
tests/service/test_fuzz.py runs schemathesis against the document (every documented
status, content type, header and response schema).
"""
from __future__ import annotations

from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from service.api import HEADERS, SPECS, ErrorBody, Spec, template

REF = "#/components/schemas/{model}"


def _schema(answer, defs: dict) -> dict:
    """A JSON schema for `answer` (a model, list[model] or a raw schema dict), its
    definitions added to `defs`."""
    if isinstance(answer, dict):
        return answer
    found = TypeAdapter(answer).json_schema(ref_template=REF)
    defs.update(found.pop("$defs", {}))
    return found


def _parameters(spec: Spec) -> list[dict]:
    found = [{"name": name, "in": "path", "required": True, "description": text,
              "schema": {"type": "string"}, "example": example}
             for name, (text, example) in spec.path.items()]
    if spec.query is not None:
        schema = spec.query.model_json_schema(ref_template=REF)
        for name, prop in schema["properties"].items():
            found.append({"name": name, "in": "query", "required": name in schema.get(
                "required", ()), "description": prop.pop("description", ""), "schema": prop})
    return found


def _operation(spec: Spec, defs: dict) -> dict:
    ok = {"description": "OK" if spec.ok == 200 else "Accepted",
          "headers": {h: {"description": HEADERS[h], "schema": {"type": "string"}}
                      for h in spec.headers}}
    if spec.answer is not None:
        ok["content"] = {spec.content_type: {"schema": _schema(spec.answer, defs)}}
    responses = {str(spec.ok): ok, **{str(code): {**ok, "description": "see summary"}
                               for code in spec.also},
                 **{str(code): {"$ref": "#/components/responses/Error"} for code in spec.errors}}
    operation = {"summary": spec.summary, "parameters": _parameters(spec),
                 "responses": responses}
    if spec.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _schema(spec.body, defs)}}}
    if spec.access == "admin":
        operation["security"] = [{"apiKey": []}]
    elif spec.access == "storefront":  # a key when storefront.api_keys is set
        operation["security"] = [{}, {"apiKey": []}]
    return operation


def document() -> dict:
    defs: dict = {}
    paths: dict = {}
    for spec in SPECS:
        path = template(spec.rule)
        paths.setdefault(path, {})[spec.method.lower()] = _operation(spec, defs)
    _, error_defs = models_json_schema([(ErrorBody, "serialization")], ref_template=REF)
    defs.update(error_defs.get("$defs", {}))
    return {
        "openapi": "3.1.0",
        "info": {"title": "shoprecs", "version": "1",
                 "description": "Product recommendations from the nightly published model."},
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header",
                                           "name": "X-API-Key"}},
            "responses": {"Error": {"description": "the JSON error", "content": {
                "application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}}}},
    }

