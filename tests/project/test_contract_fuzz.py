"""The contract, fuzzed: schemathesis reads the OpenAPI document from the live production server
(/api/schema/) and runs every operation with requests it generates from it, valid and invalid, over
real HTTP: once authenticated with a JWT and once with an API key, staff-only operations as staff.

Every answer is held to every check schemathesis offers on a single response: no server error; a
documented status, media type, body shape and headers; invalid requests refused and valid ones
accepted. A valid request may still be refused for what a JSON schema cannot say (a row whose
length is not the model's feature count, a user who does not exist, a period longer than the
limit, a cursor no page gave out): such a refusal must be a 400 whose details name only the fields
SEMANTIC_FIELDS allows for that operation (and its description says so); anything else fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.hypothesis import examples
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import api_key_create
from tests.conftest import bearer

# Per generation mode (valid, invalid), per way of authenticating. The same examples every run, so
# `make test` passes or fails on the code alone; FUZZ_RANDOM=1 (and more FUZZ_EXAMPLES) explores:
#   FUZZ_RANDOM=1 FUZZ_EXAMPLES=300 .venv/bin/python -m pytest tests/project/test_contract_fuzz.py
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "75"))
DERANDOMIZE = os.environ.get("FUZZ_RANDOM", "") != "1"
STAFF_OPERATIONS = {
    ("POST", "/api/v1/api-keys/"),
    ("POST", "/api/v1/api-keys/{id}/revoke/"),
    ("PATCH", "/api/v1/api-keys/{id}/"),
    ("PUT", "/api/v1/models/{name}/aliases/{alias}/"),
    ("DELETE", "/api/v1/models/{name}/aliases/{alias}/"),
    ("GET", "/api/v1/models/{name}/rollout/"),
    ("PUT", "/api/v1/models/{name}/rollout/"),
    ("DELETE", "/api/v1/models/{name}/rollout/"),
    ("GET", "/api/v1/models/{name}/rollout/compare/"),
    ("POST", "/api/v1/models/{name}/rollback/"),
    ("POST", "/api/v1/models/{name}/activate/"),
    ("GET", "/api/v1/models/{name}/changes/"),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
# What a valid request can still be refused for, by the fields a 400 names (see the module docstring).
SEMANTIC_FIELDS = {
    ("POST", "/api/v1/predictions/"): {"features", "instances"},
    # until before since; a date outside years 1 to 9999 once in UTC
    ("GET", "/api/v1/predictions/"): {"cursor", "since", "until"},
    ("GET", "/api/v1/api-keys/"): {"cursor"},
    ("POST", "/api/v1/api-keys/"): {"user", "expires_at"},
    ("GET", "/api/v1/models/"): {"page"},
    ("POST", "/api/v1/generations/"): {"system"},
    ("POST", "/v1/chat/completions"): {"messages"},
    ("POST", "/v1/embeddings"): {"input"},  # any JSON in the schema; text only here
    ("GET", "/api/v1/analytics/summary/"): {"start", "end"},
    ("GET", "/api/v1/analytics/usage/"): {"start", "end", "interval"},
    # a canary or shadow that is the active version, or of another shape
    ("PUT", "/api/v1/models/{name}/rollout/"): {"canary", "shadow"},
    ("GET", "/api/v1/models/{name}/rollout/compare/"): {"start", "end"},
}
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            # The security schemes' headers are ours to send, not to fuzz.
            "with-security-parameters": False,
            # A NUL is refused anywhere in a body (project/json.py); OpenAPI 3.0 can say so of the
            # strings it describes (their patterns do), not of the keys of a free-form object.
            "allow-x00": False,
        },
        # A batch over its limit (maxItems) is refused as too large.
        "checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "413"]}},
    }
)
SERVER_ENV = {
    "RATE_LIMIT_DEFAULT": "100000/m",
    "RATE_LIMIT_PREDICTIONS": "100000/m",
    "RATE_LIMIT_GENERATION": "100000/m",
    "RATE_LIMIT_LOGIN_IP": "100000/m",
    # Fuzzed logins fail by the hundred: their own limits must not answer for them.
    "LOGIN_FAILURES_PER_USERNAME_AND_ADDRESS": "100000/h",
    "LOGIN_FAILURES_PER_ADDRESS": "100000/h",
    "LOGIN_FAILURES_PER_USERNAME": "100000/h",
    "OPENAI_MAX_RETRIES": "0",
    "OPENAI_TIMEOUT_SECONDS": "10",
}


@dataclass
class Tally:
    cases: int = 0
    semantic: int = 0
    failures: dict[tuple[str, str], str] = field(default_factory=dict)  # (operation, failure) -> report
    no_invalid: list[str] = field(default_factory=list)  # operations no invalid request can be made for


def _semantic_refusal(case: Any, response: Any) -> bool:
    """A valid request refused for what the schema cannot say: a 400 naming only allowed fields."""
    allowed = SEMANTIC_FIELDS.get((case.method.upper(), case.operation.path), set())
    if response.status_code != 400 or not allowed:
        return False
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(details) and set(details) <= allowed


def _check(case: Any, *, headers: dict[str, str], tally: Tally) -> None:
    """Send one case and hold its answer to every check; keep what fails."""
    tally.cases += 1
    response = case.call(headers=headers, timeout=30)
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        semantic = _semantic_refusal(case, response)
        real = [f for f in group.exceptions if not (semantic and isinstance(f, RejectedPositiveData))]
        if semantic and not real:
            tally.semantic += 1
        for failure in real:
            tally.failures.setdefault((case.operation.label, failure.title), str(group)[:3000])


def _documented_examples(operation: Any, *, headers: dict[str, str], tally: Tally) -> None:
    """The document's own examples first: they reach what random data rarely does (a row the
    model takes, a key made for a user who exists)."""
    for strategy in operation.get_strategies_from_examples():
        _check(examples.generate_one(strategy), headers=headers, tally=tally)


def _fuzz(operation: Any, *, mode: schemathesis.GenerationMode, headers: dict[str, str], tally: Tally) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=DERANDOMIZE,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is kept as found
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def run(case: Any) -> None:
        _check(case, headers=headers, tally=tally)

    try:
        run()
    except Unsatisfiable:
        # Nothing about the operation can be made invalid (no body, no parameters but the path's).
        if mode is schemathesis.GenerationMode.POSITIVE:
            raise
        tally.no_invalid.append(operation.label)


def _run(schema: Any, *, credentials: Callable[[Any], dict[str, str]]) -> Tally:
    tally = Tally()
    for result in schema.get_all_operations():
        operation = result.ok()
        _documented_examples(operation, headers=credentials(operation), tally=tally)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _fuzz(operation, mode=mode, headers=credentials(operation), tally=tally)
    return tally


def _staff_only(operation: Any) -> bool:
    return (operation.method.upper(), operation.path) in STAFF_OPERATIONS


def test_the_live_service_keeps_its_openapi_contract(gunicorn_server, fake_openai, alice, staff, capsys):
    base_url = gunicorn_server(
        workers=2,
        production_config=True,
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_API_KEY="sk-test",
        **SERVER_ENV,
    )
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/", config=CONFIG)

    # API keys first: the JWT run revokes keys as staff, and a key of alice's among them.
    keys = {user: api_key_create(user=user, name="fuzz", created_by=None).key for user in (alice, staff)}

    def by_key_for(operation: Any) -> dict[str, str]:
        key = keys[staff if _staff_only(operation) else alice]
        # The OpenAI SDKs send a key as a Bearer token; everything else, as X-API-Key.
        return {"Authorization": f"Bearer {key}"} if operation.path.startswith("/v1/") else {"X-API-Key": key}

    def by_jwt_for(operation: Any) -> dict[str, str]:
        return {"Authorization": bearer(staff if _staff_only(operation) else alice)}

    by_key = _run(schema, credentials=by_key_for)
    # The keys still work after their run: a key revoked midway would have made every later case
    # a 401, which the checks accept, so the run would have passed without testing anything.
    for key in keys.values():
        assert requests.get(f"{base_url}/api/v1/models/", headers={"X-API-Key": key}, timeout=30).status_code == 200
    by_jwt = _run(schema, credentials=by_jwt_for)

    with capsys.disabled():
        for name, tally in (("API key", by_key), ("JWT", by_jwt)):
            print(
                f"\nschemathesis, {name}: {tally.cases} cases, {len(tally.failures)} failures, "
                f"{tally.semantic} valid requests refused for what the schema cannot say; "
                f"no invalid request possible for {', '.join(tally.no_invalid) or 'none'}"
            )
    failures = {**by_key.failures, **by_jwt.failures}
    assert by_key.cases > 0 and by_jwt.cases > 0
    assert not failures, "\n\n".join(f"{label}: {title}\n{report}" for (label, title), report in failures.items())
