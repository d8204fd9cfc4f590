"""Every route of the API, defined once: its parameters and body as pydantic models, its
answer as a shape of service/answers.py.

`endpoint` registers a Flask view with its definition. On each request it validates the
query string and the JSON body with those models (pydantic: a few microseconds) and hands
the view the parsed values; a value that breaks its rule becomes the JSON 400 whose code
names the parameter (`invalid_limit`, `invalid_items`, ...) and whose message states the
rule. service/openapi.py builds /openapi.json from the same definitions, so the document
and the behaviour cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from flask import Blueprint, make_response, request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
)

from service.answers import GoodsId
from service.auth import declare
from service.errors import ApiError

MAX_LIMIT = 100
MAX_BASKET = 100
MAX_LISTED = 100  # ids in `exclude`, categories in `category`
MAX_RECENT = 20  # ids in `recent`

Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="how many answers, 1 to 100")]


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _listed(value: str | None, most: int) -> tuple[str, ...] | None:
    """The distinct non-blank values of a comma-separated parameter (None stays None)."""
    if value is None:
        return None
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if len(items) > most:
        raise ValueError(f"at most {most} comma-separated values, got {len(items)}")
    return items


def Listed(most: int, max_length: int = 4000):  # noqa: N802 (a type, as pydantic's are)
    """A comma-separated query parameter of at most `most` values."""
    def check(value: str) -> str:
        _listed(value, most)  # raises ValueError, which pydantic reports
        return value
    return Annotated[str, Field(max_length=max_length), AfterValidator(check)]


def _some(value: str | None) -> str | None:
    if value is not None and not _listed(value, MAX_LISTED):
        raise ValueError("name at least one category, or leave category out")
    return value


class Filtered(Query):
    """The shop's filters, the same on every storefront route (engine/shoprules.py)."""

    category: Annotated[Listed(MAX_LISTED) | None, AfterValidator(_some)] = Field(
        None, description="keep only goods of these categories (comma-separated, as in the "
        "catalog)")
    exclude: Listed(MAX_LISTED) = Field("", description="leave out these goods ids "
                                        "(comma-separated), e.g. what is in the cart or on "
                                        "the page")

    @property
    def categories(self) -> tuple[str, ...] | None:
        return _listed(self.category, MAX_LISTED)

    @property
    def excluded(self) -> tuple[str, ...]:
        return _listed(self.exclude, MAX_LISTED)


Shopper = Annotated[StrictStr, Field(max_length=40, description="the shopper's phone, any "
                                     "format: their experiment arm, and whose impression")]


class Shown(Filtered):
    """What every storefront answer takes besides the filters (service/events.py)."""

    envelope: bool = Field(False, description='answer {"recommendationId": "...", "items": '
                           '[...]} instead of the bare list (the id is also in the '
                           'X-Recommendation-Id header)')


class RecommendationsQuery(Shown):
    limit: Limit = 10
    exclude_bought: bool = Field(False, description="leave out goods the shopper ever bought")
    recent: Listed(MAX_RECENT, 2000) = Field("", description="goods viewed, carted or bought "
                                             "in this session, most recent first "
                                             "(comma-separated): their neighbours and rules "
                                             "join the list; they are not offered back")

    @property
    def recent_ids(self) -> tuple[str, ...]:
        return _listed(self.recent, MAX_RECENT)


class AssociationsQuery(Filtered):
    limit: Limit = 10
    min_confidence: float = Field(0.0, ge=0, le=1, allow_inf_nan=False,
                                  description="only rules at least this confident")
    sort: Literal["confidence", "lift"] = Field("confidence", description="order of the rules")
    collapse_variants: bool = Field(False, description="one rule per product whatever its "
                                    "colour or size, none to the product's own variants")


def _needs_shopper(value: bool, info: ValidationInfo) -> bool:
    if value and info.data.get("shopper") is None:
        raise ValueError("leaving out what a shopper bought needs the shopper: give shopper")
    return value


# declared after `shopper`, whose value it reads
ExcludeBought = Annotated[bool, AfterValidator(_needs_shopper), Field(
    description="leave out goods the shopper (`shopper`) ever bought")]


class SimilarQuery(Shown):
    limit: Limit = 10
    shopper: Shopper | None = None
    exclude_bought: ExcludeBought = False


class Basket(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True,
                              json_schema_extra={"example": {"items": [10082, 10071],
                                                             "limit": 10}})
    items: list[GoodsId] = Field(min_length=1, max_length=MAX_BASKET,
                                 description="the goods in the cart")
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_LIMIT)] = 10
    category: list[StrictStr] | None = Field(None, min_length=1, max_length=MAX_LISTED,
                                             description="keep only goods of these categories")
    exclude: list[GoodsId] = Field([], max_length=MAX_LISTED,
                                   description="leave out these goods ids")
    shopper: Shopper | None = None
    exclude_bought: ExcludeBought = False
    envelope: bool = Field(False, description='answer {"recommendationId": "...", "items": '
                           '[...]} instead of the bare list')


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


@dataclass(frozen=True)
class Spec:
    """One route as the document shows it."""

    method: str
    rule: str  # Flask's, e.g. /users/<phone>/recommendations
    summary: str
    path: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (text, example)
    query: type[Query] | None = None
    body: type[BaseModel] | None = None
    answer: Any = None  # a model or type (list[...]: service/answers.py), or a raw schema
    content_type: str = "application/json"
    headers: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()  # statuses answered with the JSON error
    also: tuple[int, ...] = ()  # other statuses answered like 200 (/ready's 503)
    access: str = "storefront"  # public, storefront or admin (service/auth.py)
    ok: int = 200  # the status of a good answer (POST /events: 202 Accepted)


SPECS: list[Spec] = []


@functools.cache  # once per rule: the metrics label it on every request
def template(rule: str) -> str:
    """A Flask rule as the document writes it: /users/<phone>/x -> /users/{phone}/x."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


HEADERS = {"X-Model-Version": "the model version that answered",
           "X-Recommendation-Source": "where the goods came from, comma-separated: "
                                      "personalized, context (the `recent` goods), rules, "
                                      "similar, popular (alone for an unknown shopper, or "
                                      "filling a list the filters thinned)",
           "X-Recommendation-Id": "this answer's id: send it back with clicks and "
                                  "add-to-carts (POST /events)",
           "X-Experiment-Arm": "the shopper's arm of the running A/B test, if any"}


def endpoint(bp: Blueprint, rule: str, method: str = "GET", **spec) -> Callable:
    """Register the decorated view at `rule` with its Spec and access level (checked before
    the view, service/auth.py); the view receives the path values and, when the Spec has
    them, `query=` and `body=` parsed by their models."""
    definition = Spec(method, rule, **spec)
    implied = {"admin": {401, 403}, "storefront": {401}, "public": set()}[definition.access]
    if definition.body is not None:  # not JSON, malformed, too big
        implied |= {400, 413, 415}
    definition = dataclasses.replace(definition, errors=tuple(sorted(
        set(definition.errors) | implied)))
    SPECS.append(definition)

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def handle(**path):
            if definition.query is not None:
                path["query"] = parse(definition.query, request.args.to_dict())
            if definition.body is not None:
                path["body"] = parse(definition.body, json_body())
            if definition.access != "admin":
                return view(**path)
            response = make_response(view(**path))
            response.headers["Cache-Control"] = "no-store"  # admin answers: never cached
            return response

        bp.add_url_rule(rule, view.__name__, handle, methods=[method])
        declare(f"{bp.name}.{view.__name__}", definition.access)
        return handle
    return wrap


def json_body():
    """The request's body as JSON: 415 unless it is sent as JSON (a cross-site form cannot
    post it), 400 for JSON that is malformed or nested too deep to parse."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send the body as JSON, with "
                       f"Content-Type: application/json (got {mimetype or 'none'!r})")
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not JSON (or is nested too deep)") \
            from None


def parse(model: type[BaseModel], values):
    """`values` as `model`, or the JSON 400 naming the first value that breaks its rule."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:
            example = model.model_config.get("json_schema_extra", {}).get("example")
            raise ApiError(400, "invalid_json", "the body must be a JSON object"
                           + (f" like {example}" if example else "")) from None
        name = str(error["loc"][0])
        where = ".".join(str(part) for part in error["loc"])  # events.0.type
        raise ApiError(400, f"invalid_{name}", f"{where}: {error['msg']}") from None
