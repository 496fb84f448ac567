"""The access table (hub/accounts/access.py), role by role and agency by agency.

A referral from pp-ahtjp (police) to pp-shelter-a (shelter). Outsiders and coordinators
get NotFound for anything about the referral, never Forbidden: no existence oracle.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from hub.access import Principal, allowed, require
from hub.errors import Forbidden, NotFound, Unauthenticated

REFERRAL = SimpleNamespace(from_agency_id="pp-ahtjp", to_agency_id="pp-shelter-a")
KIND = {"pp-ahtjp": "police", "pp-shelter-a": "shelter", "pp-shelter-b": "shelter", "pp-committee": "committee",
        "ncct": "committee", None: None}

OK, FORBIDDEN, NOT_FOUND = "ok", "403", "404"


def who(agency: str | None, role: str) -> Principal:
    kind = "token" if role == "agency_system" else "user"
    return Principal(kind=kind, agency_id=agency, role=role, user_id=1 if kind == "user" else None,
                     token_id=1 if kind == "token" else None, province=None if agency in (None, "ncct") else "KH-12",
                     agency_kind=KIND[agency])


# (agency, role) -> expected outcome for each referral action
REFERRAL_MATRIX = {
    # the sender agency
    ("pp-ahtjp", "officer"):          {"referral.view": OK, "referral.decide": FORBIDDEN, "referral.withdraw": OK},
    ("pp-ahtjp", "agency_admin"):     {"referral.view": OK, "referral.decide": FORBIDDEN, "referral.withdraw": OK},
    ("pp-ahtjp", "agency_system"):    {"referral.view": OK, "referral.decide": FORBIDDEN, "referral.withdraw": OK},
    ("pp-ahtjp", "caseworker"):       {"referral.view": OK, "referral.decide": FORBIDDEN, "referral.withdraw": FORBIDDEN},
    # the recipient agency
    ("pp-shelter-a", "caseworker"):   {"referral.view": OK, "referral.decide": OK, "referral.withdraw": FORBIDDEN},
    ("pp-shelter-a", "agency_admin"): {"referral.view": OK, "referral.decide": OK, "referral.withdraw": FORBIDDEN},
    ("pp-shelter-a", "agency_system"): {"referral.view": OK, "referral.decide": OK, "referral.withdraw": FORBIDDEN},
    ("pp-shelter-a", "officer"):      {"referral.view": OK, "referral.decide": FORBIDDEN, "referral.withdraw": FORBIDDEN},
    # a third agency, coordinators, the hub's operator: not even a hint
    ("pp-shelter-b", "caseworker"):   {"referral.view": NOT_FOUND, "referral.decide": NOT_FOUND, "referral.withdraw": NOT_FOUND},
    ("pp-shelter-b", "agency_system"): {"referral.view": NOT_FOUND, "referral.decide": NOT_FOUND, "referral.withdraw": NOT_FOUND},
    ("pp-committee", "coordinator"):  {"referral.view": NOT_FOUND, "referral.decide": NOT_FOUND, "referral.withdraw": NOT_FOUND},
    ("pp-committee", "agency_system"): {"referral.view": NOT_FOUND, "referral.decide": NOT_FOUND, "referral.withdraw": NOT_FOUND},
    ("ncct", "coordinator"):          {"referral.view": NOT_FOUND, "referral.decide": NOT_FOUND, "referral.withdraw": NOT_FOUND},
    (None, "hub_admin"):              {"referral.view": NOT_FOUND, "referral.decide": NOT_FOUND, "referral.withdraw": NOT_FOUND},
}


def _outcome(principal, action, **kw) -> str:
    try:
        require(principal, action, **kw)
    except NotFound:
        return NOT_FOUND
    except Forbidden:
        return FORBIDDEN
    return OK


@pytest.mark.parametrize("agency,role,action,expected", [
    (agency, role, action, expected)
    for (agency, role), row in REFERRAL_MATRIX.items() for action, expected in row.items()
])
def test_referral_actions(agency, role, action, expected):
    assert _outcome(who(agency, role), action, referral=REFERRAL) == expected


@pytest.mark.parametrize("agency,role,expected", [
    ("pp-ahtjp", "officer", OK),
    ("pp-ahtjp", "agency_admin", OK),
    ("pp-ahtjp", "agency_system", OK),
    ("pp-ahtjp", "caseworker", FORBIDDEN),
    ("pp-shelter-a", "agency_system", OK),  # shelters' systems may refer onwards
    ("pp-committee", "agency_system", FORBIDDEN),
    ("pp-committee", "coordinator", FORBIDDEN),
    ("pp-committee", "agency_admin", FORBIDDEN),
    (None, "hub_admin", FORBIDDEN),
])
def test_who_may_create_a_referral(agency, role, expected):
    assert _outcome(who(agency, role), "referral.create") == expected


@pytest.mark.parametrize("agency,role,target,expected", [
    ("pp-shelter-a", "caseworker", "pp-shelter-a", OK),
    ("pp-shelter-a", "agency_admin", "pp-shelter-a", OK),
    ("pp-shelter-a", "agency_system", "pp-shelter-a", OK),
    ("pp-shelter-a", "officer", "pp-shelter-a", FORBIDDEN),
    ("pp-shelter-b", "agency_system", "pp-shelter-a", FORBIDDEN),
    ("pp-ahtjp", "agency_system", "pp-shelter-a", FORBIDDEN),
    ("pp-committee", "coordinator", "pp-shelter-a", FORBIDDEN),
    (None, "hub_admin", "pp-shelter-a", FORBIDDEN),
])
def test_who_may_set_capacity(agency, role, target, expected):
    assert _outcome(who(agency, role), "capacity.set", agency_id=target) == expected


@pytest.mark.parametrize("action", ["escalations.view", "escalations.take", "reports.view"])
@pytest.mark.parametrize("agency,role,expected", [
    ("pp-committee", "coordinator", OK),
    ("ncct", "coordinator", OK),
    ("pp-committee", "agency_system", OK),
    ("pp-committee", "agency_admin", FORBIDDEN),
    ("pp-shelter-a", "agency_system", FORBIDDEN),
    ("pp-ahtjp", "officer", FORBIDDEN),
    (None, "hub_admin", FORBIDDEN),
])
def test_coordination_is_for_coordinators(action, agency, role, expected):
    assert _outcome(who(agency, role), action) == expected


@pytest.mark.parametrize("agency,role,target,expected", [
    ("pp-shelter-a", "agency_admin", "pp-shelter-a", OK),
    ("pp-shelter-a", "agency_admin", "pp-shelter-b", FORBIDDEN),
    ("pp-shelter-a", "caseworker", "pp-shelter-a", FORBIDDEN),
    ("pp-shelter-a", "agency_system", "pp-shelter-a", FORBIDDEN),
    (None, "hub_admin", "pp-shelter-b", OK),
])
def test_agency_administration(agency, role, target, expected):
    assert _outcome(who(agency, role), "agency.admin", agency_id=target) == expected


def test_an_sms_contact_acts_with_its_role():
    contact = Principal(kind="contact", agency_id="pp-shelter-a", role="caseworker", display="contact:7")
    assert allowed(contact, "referral.decide", referral=REFERRAL)
    assert allowed(contact, "capacity.set", agency_id="pp-shelter-a")
    assert not allowed(contact, "referral.create")


def test_display_names_the_actor_for_the_audit_log():
    assert who("pp-ahtjp", "officer").display == "user:1"
    assert who("pp-ahtjp", "agency_system").display == "token:1"


def test_no_principal_is_unauthenticated_and_unknown_actions_are_a_bug():
    with pytest.raises(Unauthenticated):
        require(None, "referral.create")
    with pytest.raises(ValueError):
        require(who("pp-ahtjp", "officer"), "referral.delete")


def test_accounts_and_directory_never_import_flask():
    import subprocess
    import sys

    code = ("import sys, hub.accounts.service, hub.access, hub.directory.service, hub.demo; "
            "sys.exit(1 if 'flask' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
