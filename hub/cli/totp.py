"""`hub totp reseal`: after HUB_SECRET_KEY is rotated, seal every TOTP secret under the new key.

Run it with the new key in HUB_SECRET_KEY and the old one in HUB_SECRET_KEY_PREVIOUS (the
hub accepts both meanwhile); once it reports no secret left under the old key, drop
HUB_SECRET_KEY_PREVIOUS. Prints one line of JSON: ``{"resealed": N, "current": M,
"unreadable": K}``; exit 1 when some secret opens with neither key (those members sign in
with a recovery code and enrol again).
"""
from __future__ import annotations

import json

import click

from hub.accounts import service as accounts
from hub.cli.context import HubCliError, HubGroup, command_context, config_option
from hub.db import session_scope


@click.group("totp", cls=HubGroup)
def totp() -> None:
    """The members' TOTP secrets."""


@totp.command("reseal")
@config_option
def reseal_command() -> None:
    """Seal every TOTP secret under HUB_SECRET_KEY (those sealed under HUB_SECRET_KEY_PREVIOUS too)."""
    ctx = command_context()
    if ctx.settings.secret_key is None:
        raise HubCliError("no HUB_SECRET_KEY (nor a demo secret key): nothing to seal with")
    with session_scope(ctx.sessions) as session:
        report = accounts.reseal_totp_secrets(session, ctx.settings.totp_keys, clock=ctx.clock)
    click.echo(json.dumps({"resealed": report.resealed, "current": report.current,
                           "unreadable": len(report.unreadable)}))
    if report.unreadable:
        raise HubCliError(f"{len(report.unreadable)} TOTP secret(s) open with neither HUB_SECRET_KEY nor "
                          f"HUB_SECRET_KEY_PREVIOUS (users {', '.join(map(str, report.unreadable[:10]))}); they "
                          "sign in with a recovery code and set up TOTP again", exit_code=1)
