"""What every `hub` command shares: its one line of error, ``--config``, and the one way to build its context.

Errors are one line on stderr, ``hub: <what>; <how to fix>``, with exit code 2 for bad
usage or input and 1 for a failed check or a refused operation; never a traceback.
"""
from __future__ import annotations

import sys
from typing import Any

import click
import sqlalchemy.exc

from hub.clock import FixedClock, parse_rfc3339
from hub.config import load_settings
from hub.context import HubContext
from hub.errors import (
    BadInput,
    ConfigError,
    Forbidden,
    HubError,
    Invalid,
    NotFound,
    Unauthenticated,
)
from hub.packets import KeyRingError, PacketError

# Errors that mean "what you typed or pointed at is wrong" (exit 2); the rest are refusals (exit 1).
INPUT_ERRORS = (BadInput, Invalid, NotFound, ConfigError, Unauthenticated, Forbidden, KeyRingError)


class HubCliError(click.ClickException):
    """One line on stderr and an exit code; never a traceback."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"hub: {self.message}", err=True)


def as_cli_error(exc: BaseException) -> HubCliError:
    if isinstance(exc, (HubError, KeyRingError)):
        return HubCliError(exc.message, 2 if isinstance(exc, INPUT_ERRORS) else 1)
    if isinstance(exc, PacketError):
        return HubCliError(exc.message, 1)
    raise exc


class HubGroup(click.Group):
    """A command group whose commands' HubErrors and database failures end as one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (HubError, PacketError, KeyRingError) as exc:
            raise as_cli_error(exc) from None
        except sqlalchemy.exc.OperationalError as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise HubCliError(f"cannot use the database ({reason}); check [database] url or HUB_DATABASE_URL,"
                              " and run `hub init`", 1) from None
        except sqlalchemy.exc.DBAPIError as exc:
            # Never the statement or its values: the type is enough to say what went wrong.
            raise HubCliError(f"the database refused the change ({type(exc.orig or exc).__name__}); nothing was "
                              "changed; run `hub init` to bring the schema up to date", 1) from None


def _store_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.find_root().ensure_object(dict)["config"] = value
    return value


def config_option(fn):
    """``--config PATH`` on a subcommand too, so `hub init --config X` works like `hub --config X init`."""
    return click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                        expose_value=False, callback=_store_config,
                        help="config.toml to use (default ./config.toml or HUB_CONFIG).")(fn)


def command_context(*, now_text: str | None = None) -> HubContext:
    """The HubContext of this command: settings from ``--config``, the engine (disposed when the command
    ends), the clock (fixed by ``--now``). Built once per process, the same way for every command."""
    root = click.get_current_context().find_root()
    obj = root.ensure_object(dict)
    if "hub" not in obj:
        clock = None
        if now_text is not None:
            try:
                clock = FixedClock(parse_rfc3339(now_text))
            except ValueError:
                raise HubCliError(f"--now {now_text!r} is not a time with a zone; write it like "
                                  "2026-11-22T10:30:00Z", 2) from None
        obj["hub"] = HubContext.build(load_settings(obj.get("config")), clock=clock)
        root.call_on_close(obj["hub"].engine.dispose)
    return obj["hub"]


class HubCommand(HubGroup):
    """The root `hub` group: a usage mistake, too, is one line on stderr and exit 2, not click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "hub"
            message = " ".join(exc.format_message().split()).rstrip(".")
            click.echo(f"hub: {message}; see `{where} --help`", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("hub: aborted; nothing more was done", err=True)
            sys.exit(1)
        except EOFError:
            click.echo("hub: no input to read (a secret was asked for); set it in the environment instead", err=True)
            sys.exit(2)
        sys.exit(0)
