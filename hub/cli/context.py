"""The HubContext a long-running or one-shot command works with (`hub escalate`, `hub sms`, `hub scheduler`)."""
from __future__ import annotations

import sys

import click


def command_context(config_path: str | None, *, now_text: str | None = None):
    """Settings, engine, gateway and clock for a command; a bad --config or --now exits 2 with one line.

    ``hub --config X <command>`` keeps X in the root command's object; an option on
    the command itself wins. ``--now`` fixes the clock (e.g. ``hub escalate --once --now``).
    """
    from hub.clock import FixedClock, parse_rfc3339
    from hub.config import load_settings
    from hub.context import HubContext
    from hub.errors import ConfigError

    if config_path is None:
        root = click.get_current_context().find_root().obj
        if isinstance(root, dict):
            config_path = root.get("config")
    clock = None
    if now_text is not None:
        try:
            clock = FixedClock(parse_rfc3339(now_text))
        except ValueError:
            click.echo(f"hub: --now {now_text!r} is not a time with a zone; write it like 2026-11-22T10:30:00Z",
                       err=True)
            sys.exit(2)
    try:
        return HubContext.build(load_settings(config_path), clock=clock)
    except ConfigError as exc:
        click.echo(f"hub: {exc.message}", err=True)
        sys.exit(2)
