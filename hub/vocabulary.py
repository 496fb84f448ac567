"""The hub's words, defined once: every face, domain and the config validate against these.

PROTOCOL.md section 3 (states), API.md (roles, languages, provinces, gateways) and
section 2 (needs) fix them; a new word is added here and nowhere else.
"""
from __future__ import annotations

# Lifecycle (PROTOCOL.md section 3).
STATES = ("sent", "acknowledged", "accepted", "declined", "in_care", "closed", "withdrawn", "failed")
OPEN_STATES = ("sent", "acknowledged", "accepted", "in_care")
FINAL_STATES = ("declined", "closed", "withdrawn", "failed")
OUTCOMES = ("reintegrated", "repatriated", "transferred", "left_care", "other")
URGENCIES = ("urgent", "normal")
NEEDS = ("shelter", "medical", "psychosocial", "legal", "repatriation", "family_tracing", "interpreter")

# People and agencies (API.md).
ROLES = ("officer", "caseworker", "agency_admin", "coordinator", "hub_admin")
CONTACT_ROLES = ("officer", "caseworker", "agency_admin", "coordinator")
DECIDING_ROLES = ("caseworker", "agency_admin")
AGENCY_KINDS = ("police", "shelter", "social_affairs", "legal_aid", "iom", "committee")
LANGUAGES = ("km", "en")
DEFAULT_LANGUAGE = "km"

# ISO 3166-2:KH: KH-1 Banteay Meanchey ... KH-12 Phnom Penh ... KH-17 Siem Reap ... KH-25 Tbong Khmum.
PROVINCES = tuple(f"KH-{n}" for n in range(1, 26))

# SMS and escalation (PROTOCOL.md sections 4 and 5).
GATEWAYS = ("console", "twilio")
TARGETS = ("recipient.duty", "recipient.all", "sender.officer", "sender.all", "coordinator.province",
           "coordinator.national")
CLOCKS = ("ack", "decide", "arrive")
CLOCK_FOR_STATE = {"sent": "ack", "acknowledged": "decide", "accepted": "arrive"}


def default_contact_role(agency_kind: str) -> str:
    """The role a new SMS contact gets when none is given: officers at police, coordinators at committees."""
    return {"police": "officer", "committee": "coordinator"}.get(agency_kind, "caseworker")
