"""The API fuzzed from its own OpenAPI document with schemathesis, in process (WSGI), bounded.

Every operation of /api/v1/openapi.json gets valid and invalid cases from the document, sent with a
real token of an agency that may call it (the sender for most; the recipient for its transitions; a
coordinator for escalations and reports) and, half the time, the id of a real referral or agency in
place of the generated one. Each response: never a 5xx, conforms to the document (status, content
type, schema); and a rejected request (4xx) changes no row of the referral tables. Deeply nested
bodies (depth 10,000) are sent to every operation that takes a body.

The count of cases and of 5xx is printed at the end of each operation's run (pytest -s shows it).
"""
from __future__ import annotations

import json

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from hub.api.openapi import document
from hub.directory.models import Agency
from hub.referrals.models import Referral, ReferralEvent, ReferralPacket
from tests.instance import GENEROUS_LIMITS, make_settings

SCHEMA = schemathesis.openapi.from_dict(document())
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}
MAX_EXAMPLES = 25
DEPTH = 10_000

RECIPIENT_ONLY = ("acknowledge", "accept", "decline", "start-care", "close", "fail")


@pytest.fixture(name="settings")
def _limited_settings(tmp_path, database_url):
    """The project's settings with rate limits out of the way: the fuzzer sends hundreds of requests a
    minute with one token; the limits have their own tests. A 429 is in the document all the same."""
    return make_settings(tmp_path, database_url, **GENEROUS_LIMITS)


def _agency_for(label: str) -> str:
    if label.split()[1].startswith(("/escalations", "/reports")):
        return "pp-committee"
    if label.startswith("POST /referrals/{id}/") and label.rsplit("/", 1)[1] in RECIPIENT_ONLY:
        return "pp-shelter-a"
    if label.startswith("PUT /agencies/{id}/capacity"):
        return "pp-shelter-a"
    return "pp-ahtjp"  # the sender


def _state(db):
    """What a rejected request must leave as it was: the referral tables, and the agencies' beds."""
    with db() as s:
        return (tuple(s.execute(sa.select(Referral.id, Referral.status, Referral.version).order_by(Referral.id))),
                s.scalar(sa.select(sa.func.count()).select_from(ReferralPacket)),
                s.scalar(sa.select(sa.func.count()).select_from(ReferralEvent)),
                tuple(s.execute(sa.select(Agency.id, Agency.beds_available).order_by(Agency.id))))


def _negative_in(case) -> set[str]:
    """Where schemathesis made this case invalid (query, header, path, cookie, body)."""
    meta = getattr(case, "_meta", None)
    if meta is None:
        return set()
    return {str(getattr(loc, "value", loc)) for loc, info in meta.components.items()
            if info.mode == GenerationMode.NEGATIVE}


def _real_ids(case, referral_id: str, agency: str, use_real: bool) -> None:
    # An id made invalid on purpose stays invalid (else the case is valid but still counted as invalid).
    if use_real and case.path_parameters and "id" in case.path_parameters and "path" not in _negative_in(case):
        case.path_parameters["id"] = agency if case.path.startswith("/agencies") else referral_id


def _send(app, case, network, agency):
    return case.call(app=app, headers=network.headers(agency))


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_fuzz_every_operation_from_the_openapi_document(label, app, client, network, submit, db):
    # The document as served, bound to this app: the checks' own probes (ignored auth and the like) go to it too.
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    agency = _agency_for(label)
    referral_id = submit()["id"]
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    counts = {"cases": 0, "5xx": 0}

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases, use_real=st.booleans())
    def run(case, use_real):
        # The real Authorization header replaces a generated one: a case invalid only there is not one.
        assume(_negative_in(case) - {"header", "cookie"} or not _negative_in(case))
        _real_ids(case, referral_id, agency, use_real)
        before = _state(db)
        response = _send(app, case, network, agency)
        counts["cases"] += 1
        counts["5xx"] += response.status_code >= 500
        assert response.status_code < 500, response.text[:2000]
        # Schema-valid is not always acceptable: 422 for an agency that does not exist, more beds than it has.
        case.validate_response(response, headers=network.headers(agency), excluded_checks=[positive_data_acceptance])
        if 400 <= response.status_code < 500:
            assert _state(db) == before, f"{label} answered {response.status_code} but changed the database"

    run()
    print(f"\nschemathesis {label}: {counts['cases']} cases, {counts['5xx']} 5xx")


def _nested(kind: str) -> bytes:
    return ("[" * DEPTH + "]" * DEPTH if kind == "array" else '{"a":' * DEPTH + "1" + "}" * DEPTH).encode()


WITH_BODY = sorted(label for label, op in OPERATIONS.items() if op.body)


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("label", WITH_BODY)
def test_deeply_nested_bodies_are_a_clear_4xx(label, kind, app, client, network, submit, db):
    operation = OPERATIONS[label]
    agency = _agency_for(label)
    referral_id = submit()["id"]
    path = operation.path.replace("{id}", "pp-shelter-a" if operation.path.startswith("/agencies") else referral_id)
    before = _state(db)
    resp = client.open("/api/v1" + path, method=operation.method.upper(), data=_nested(kind),
                       content_type="application/json", headers=network.headers(agency))
    # Too deep (400), or on a route whose bodies are small, too large before it is parsed (413).
    assert resp.status_code in (400, 413), resp.status_code
    assert set(resp.get_json()["error"]) == {"code", "message"}
    assert _state(db) == before
    json.dumps(resp.get_json())
