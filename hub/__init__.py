"""refhub: a secure referral hub for agencies that protect victims of human trafficking."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from hub.config import Settings


def create_app(settings: "Settings | None" = None, **collaborators: Any) -> "Flask":
    """Wire the Flask app. No side effects: no migrations, no scheduler, no files written, no prompts.

    ``collaborators`` lets tests and `hub serve` inject a clock, an engine or an SMS gateway.
    The faces are imported here, not at the top: `import hub` (which every `hub` command
    and agency tool does) must not pull in Flask and every blueprint.
    """
    from hub.wiring import build_app

    return build_app(settings, **collaborators)
