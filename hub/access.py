"""Who may do what: every permission check of the hub, in one table.

``require(principal, action, agency_id=..., referral=...)`` returns nothing or raises:
- ``NotFound`` where telling "not allowed" apart from "does not exist" would leak
  that a referral exists (anyone outside the referral's two agencies, and coordinators);
- ``Forbidden`` where the caller may know the thing exists (an agency's own
  referral, the directory).

Coordinators see metadata only (escalations, reports): ``referral.view`` (and so the
packet) is never theirs, and a committee's own system is treated like a coordinator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from hub.errors import Forbidden, NotFound, Unauthenticated

SYSTEM = "agency_system"  # the role of an API token: an agency's own system, acting for the agency


@dataclass(frozen=True)
class Principal:
    """Whoever is acting: a signed-in user, an agency system's token, or an SMS contact.

    ``display`` is the audit log's actor ("user:12", "token:3", "contact:7").
    """

    kind: str  # "user" | "token" | "contact"
    agency_id: str | None
    role: str  # officer, caseworker, agency_admin, coordinator, hub_admin, agency_system
    user_id: int | None = None
    token_id: int | None = None
    province: str | None = None  # the agency's province (None: national, or no agency)
    agency_kind: str | None = None
    display: str = ""

    def __post_init__(self) -> None:
        if not self.display:
            ident = {"user": self.user_id, "token": self.token_id}.get(self.kind)
            object.__setattr__(self, "display", f"{self.kind}:{ident}" if ident is not None else self.kind)

    @property
    def is_coordinator(self) -> bool:
        """A coordinator, or a committee's own system: metadata only."""
        return self.role == "coordinator" or (self.role == SYSTEM and self.agency_kind == "committee")


# --- scopes: where an allowed role may act --------------------------------------------------


def _party(p: Principal, referral: Any) -> bool:
    return p.agency_id is not None and p.agency_id in (referral.from_agency_id, referral.to_agency_id)


def _sees_referral(p: Principal, referral: Any) -> None:
    """Sender or recipient agency, never a coordinator: anything else is 404, not 403."""
    if referral is None:
        raise TypeError("this action needs referral=")
    if p.is_coordinator or not _party(p, referral):
        raise NotFound("no such referral")


def _scope_create(p: Principal, agency_id: str | None, referral: Any) -> bool:
    return p.agency_id is not None and p.agency_kind not in (None, "committee")


def _scope_view(p: Principal, agency_id: str | None, referral: Any) -> bool:
    _sees_referral(p, referral)
    return True


def _scope_recipient(p: Principal, agency_id: str | None, referral: Any) -> bool:
    _sees_referral(p, referral)
    return p.agency_id == referral.to_agency_id


def _scope_sender(p: Principal, agency_id: str | None, referral: Any) -> bool:
    _sees_referral(p, referral)
    return p.agency_id == referral.from_agency_id


def _scope_own_agency(p: Principal, agency_id: str | None, referral: Any) -> bool:
    if agency_id is None:
        raise TypeError("this action needs agency_id=")
    return p.agency_id == agency_id


def _scope_coordination(p: Principal, agency_id: str | None, referral: Any) -> bool:
    return p.is_coordinator


def _scope_agency_admin(p: Principal, agency_id: str | None, referral: Any) -> bool:
    if agency_id is None:
        raise TypeError("this action needs agency_id=")
    return p.role == "hub_admin" or p.agency_id == agency_id


Scope = Callable[[Principal, "str | None", Any], bool]

# action -> (roles allowed, scope). The scope raises NotFound where existence must not leak,
# and returns False where a plain 403 is right.
RULES: dict[str, tuple[frozenset[str], Scope]] = {
    "referral.create":   (frozenset({"officer", "agency_admin", SYSTEM}), _scope_create),
    "referral.view":     (frozenset({"officer", "caseworker", "agency_admin", SYSTEM}), _scope_view),
    # Whoever is on duty at the receiving agency may acknowledge ("we have seen it"); deciding on a
    # placement is for caseworkers and admins.
    "referral.acknowledge": (frozenset({"officer", "caseworker", "agency_admin", SYSTEM}), _scope_recipient),
    "referral.decide":   (frozenset({"caseworker", "agency_admin", SYSTEM}), _scope_recipient),
    "referral.withdraw": (frozenset({"officer", "agency_admin", SYSTEM}), _scope_sender),
    "capacity.set":      (frozenset({"caseworker", "agency_admin", SYSTEM}), _scope_own_agency),
    "escalations.view":  (frozenset({"coordinator", SYSTEM}), _scope_coordination),
    "escalations.take":  (frozenset({"coordinator", SYSTEM}), _scope_coordination),
    "reports.view":      (frozenset({"coordinator", SYSTEM}), _scope_coordination),
    "agency.admin":      (frozenset({"agency_admin", "hub_admin"}), _scope_agency_admin),
}

_VERB = {
    "referral.create": "send referrals",
    "referral.view": "see this referral",
    "referral.acknowledge": "acknowledge referrals addressed to your agency",
    "referral.decide": "answer referrals addressed to your agency",
    "referral.withdraw": "withdraw referrals your agency sent",
    "capacity.set": "set this agency's beds",
    "escalations.view": "see escalations",
    "escalations.take": "take escalations",
    "reports.view": "see reports",
    "agency.admin": "administer this agency",
}


def require(principal: Principal | None, action: str, *, agency_id: str | None = None, referral: Any = None) -> None:
    """Allow, or raise NotFound/Forbidden (see the module docstring and RULES)."""
    if action not in RULES:
        raise ValueError(f"unknown action {action!r}")
    if principal is None:
        raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>'")
    roles, scope = RULES[action]
    in_scope = scope(principal, agency_id, referral)  # may raise NotFound first: no oracle
    if principal.role not in roles or not in_scope:
        raise Forbidden(f"your role ({principal.role}) may not {_VERB[action]}", code="forbidden")


def allowed(principal: Principal | None, action: str, **kw: Any) -> bool:
    """``require`` as a yes/no, for showing or hiding buttons."""
    try:
        require(principal, action, **kw)
    except (Forbidden, NotFound, Unauthenticated):
        return False
    return True
