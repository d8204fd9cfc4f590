"""Schemathesis against /openapi.json: no 5xx, and every answer matches the document.

Runs in-process through the WSGI app (fast path included). Example counts are kept
modest so the suite stays fast on two cores; raise SHOPRECS_FUZZ_EXAMPLES to dig deeper.
"""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.config import Settings  # noqa: E402
from engine import publish  # noqa: E402
from service import create_app  # noqa: E402
from tests.conftest import TEST_KEY, write_model  # noqa: E402

EXAMPLES = int(os.environ.get("SHOPRECS_FUZZ_EXAMPLES", "30"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


def _app():
    """The app over a tiny published warehouse (built at collection: schemathesis
    parametrizes from the schema before fixtures exist)."""
    root = Path(tempfile.mkdtemp(prefix="shoprecs-fuzz-")) / "warehouse"
    atexit.register(shutil.rmtree, root.parent, True)
    # the OpenAPI examples' goods (10082, 10071) exist here, so 200s get checked too
    write_model(root, "v1", rules=[(["10082"], ["10071"], 0.6, 30.0, 0.01),
                                   (["10082", "10071"], ["100"], 0.5, 9.0, 0.01)],
                similar=[("10082", "10071", 0.9, 1)],
                catalog=[("10082", "Mug"), ("10071", "Saucer"), ("100", "Spoon"),
                         ("101", "Plate"), ("102", "Tray"), ("ABC1", "Tea")])
    publish(root, "v1")
    settings_ = Settings().replace(warehouse_root=str(root),
                                    privacy_hmac_key=TEST_KEY, admin_api_keys="fuzz-key")
    return create_app({"TESTING": True, "SETTINGS": settings_})


schema = schemathesis.openapi.from_wsgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_openapi_document(case):
    case.call_and_validate(checks=CHECKS)
