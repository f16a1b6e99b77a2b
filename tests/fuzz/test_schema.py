"""Schemathesis against the app's own OpenAPI spec, in process, on a real SQLite database.

The spec is read from the app at import time, so every operation it documents is
fuzzed, routes added later included. Each gets valid and invalid generated requests
(bodies, path and query parameters) with a valid API key of school A, on the embedded
set-up (SQLite file, SQLite broker; nothing consumes the tasks). Checks on every
answer:

- no 5xx (``not_a_server_error``);
- the answer matches the spec: its status is documented, its body matches the
  documented schema (every 4xx is ``ErrorPublic``), content type and headers too;
- invalid requests are refused with a 4xx (``negative_data_rejection``);
- undeclared methods get a 405 whose ``Allow`` lists exactly the documented methods;
- no secret of either school (API key, its hash, webhook or review secret) in any answer.

``positive_data_acceptance`` is left out on purpose: a schema-valid request may still be
refused by the roster or the policy rules (an unknown reviewer, a post in a channel the
roster does not know), with a documented 4xx and its code.

Bounded for CI: ``EXAMPLES`` generated cases per operation, deterministic (the same
cases every run, so a failure reproduces and CI is not flaky). 22 s for the 29
operations on the shared 2-core machine; raise ``MODERATION_FUZZ_EXAMPLES`` to search
harder (200 per operation took 3.6 minutes and found nothing more). The bugs it found
are pinned by plain tests at the end of this file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from moderation.api.main import create_app
from moderation.config import get_settings
from moderation.storage.db import dispose_engine
from moderation.storage.migrate import upgrade
from tests.fuzz.conftest import A_EXTRA, Tenant, leaked_secrets, make_tenant

EXAMPLES = int(os.environ.get("MODERATION_FUZZ_EXAMPLES", "25"))  # per operation
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    missing_required_header,
    ignored_auth,
    unsupported_method,
    allow_header_conformance,
]

APP = create_app()
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            # unknown query parameters are ignored, as HTTP APIs do; not an error
            "allow-extra-parameters": False,
            # the key is ours (below): generated Authorization headers would only be 401s
            "with-security-parameters": False,
        }
    }
)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@dataclass(frozen=True)
class FuzzEnv:
    a: Tenant  # the key every generated request carries
    b: Tenant  # a second school, whose secrets must not show up either


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzEnv]:
    """Settings for the whole module (so every operation shares one database)."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp / 'moderation.sqlite'}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "environment": "test",
            "data_dir": str(tmp / "var"),
            "database_url": url,
            "text_scorer": "fake",
            "rate_limit": "1000000/minute",
            "max_wait_s": "0.1",  # ?wait= is generated too; nothing decides posts here
        }.items():
            env.setenv(f"MODERATION_{name.upper()}", value)
        get_settings.cache_clear()
        upgrade(url)
        yield FuzzEnv(make_tenant(url, "school-a", extra=A_EXTRA), make_tenant(url, "school-b"))
        dispose_engine(url)
    get_settings.cache_clear()


def _answer_text(response: schemathesis.Response) -> str:
    headers = " ".join(f"{k}: {v}" for k, values in response.headers.items() for v in values)
    return f"{headers}\n{response.content.decode('utf-8', 'replace')}"


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_spec(case: schemathesis.Case, fuzz_env: FuzzEnv):
    response = case.call_and_validate(headers=fuzz_env.a.headers, checks=CHECKS)
    assert not leaked_secrets(_answer_text(response), [fuzz_env.a, fuzz_env.b])


# --------------------------------------------------------------------------- what it found
# Each bug the fuzzer found, pinned by a plain test (fixed in the same change).


@pytest.fixture
def client(fuzz_env: FuzzEnv) -> Iterator[TestClient]:
    with TestClient(APP, raise_server_exceptions=False) as test_client:
        test_client.headers.update(fuzz_env.a.headers)
        yield test_client


def test_405_lists_every_method_of_the_path(client: TestClient):
    """Starlette named only the first route of a path: ``Allow: GET`` on /v1/policy."""
    r = client.request("DELETE", "/v1/policy")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, PUT")
    assert r.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/takedowns/9223372036854775808/resolve"),
        ("POST", "/v1/takedowns/2147483648/resolve"),  # past PostgreSQL's INTEGER
        ("DELETE", "/v1/students/ll-1/reference-photos/99999999999999999999"),
    ],
)
def test_an_id_past_the_database_s_integers_is_a_422_not_a_500(
    client: TestClient, method: str, path: str
):
    r = client.request(method, path, json={"by": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_field"), r.text


def test_id_length_counts_the_id_as_sent(client: TestClient):
    """``strip_whitespace`` checked the length after stripping: 129 characters passed."""
    r = client.put("/v1/parents", json={"id": "\r" + "p" * 128, "name": "X"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_field")
    r = client.put("/v1/parents", json={"id": "  p-9  ", "name": " Eva "})
    assert r.status_code == 200
    r = client.put("/v1/parents", json={"id": "   ", "name": "X"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_field")


def test_every_error_answer_is_documented_as_error_public():
    """Each /v1 operation documents its 4xx answers with the one error shape, and the
    ones any request can get: 401 (the key), 422 (the input guard), 429 (the limit)."""
    spec = APP.openapi()
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "422", "429"} <= responses.keys(), f"{method} {path}"
            for status, response in responses.items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorPublic"}, (
                        f"{method.upper()} {path} {status}"
                    )
