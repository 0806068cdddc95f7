"""Property-based fuzzing (schemathesis) of the real server from its own OpenAPI schema.

Valid and invalid inputs for every operation: no 5xx, and no stack trace in any body. Kept
cheap: the server caps max_tokens at 2 and bodies at 16 KiB, and each operation gets a few
examples only.
"""

from __future__ import annotations

import os

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.server import ServerSettings, create_app

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests._live_server import LiveServer

# Few examples per operation by default (shared CPU); raise it for a deeper run.
MAX_EXAMPLES = int(os.environ.get("MLX_ENTROPIX_FUZZ_EXAMPLES", "12"))
CHEAP = ServerSettings(
    max_tokens_limit=2, max_body_bytes=16 * 1024, request_timeout_s=20, ui_dir=None
)

# The schema is static (building the app loads no model), so it is read at import time as
# schemathesis wants, and the requests go to the live server. (schemathesis.pytest.from_fixture
# fails on pytest 9: it writes a private attribute of the test item that pytest removed.)
schema = schemathesis.openapi.from_dict(create_app(CHEAP).openapi())


@pytest.fixture(scope="module")
def live():
    with LiveServer(CHEAP) as server:
        yield server
    # The fuzzing reached the model too, not only the validation.
    assert server.worker.status()["served"] > 0


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, live):
    response = case.call(base_url=live.url, timeout=60)
    case.validate_response(response, checks=[not_a_server_error])
    assert "Traceback" not in response.text
