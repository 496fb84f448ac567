"""Every table of the hub, in one metadata.

A domain's models may point at another domain's table by name (``contact.user_id``
refers to ``user_account``); SQLAlchemy resolves such a foreign key only when that
table is in the metadata. Every process that opens a session goes through
:class:`hub.context.HubContext`, which imports this module, so no command can meet a
half-filled metadata whatever it imported before.
"""
from __future__ import annotations

from hub.accounts import models as accounts  # noqa: F401
from hub.audit import models as audit  # noqa: F401
from hub.db import Base
from hub.directory import models as directory  # noqa: F401
from hub.escalation import models as escalation  # noqa: F401
from hub.notify import models as notify  # noqa: F401
from hub import ratelimits  # noqa: F401
from hub.referrals import models as referrals  # noqa: F401

metadata = Base.metadata


def create_all(engine) -> None:
    """Create every table without migrations (benchmarks only; the hub itself migrates)."""
    metadata.create_all(engine)
