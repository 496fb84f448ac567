"""The `hub` command (API.md): set-up, directory, users, contacts, tokens, the development server.

Every command takes ``--config PATH`` (default ./config.toml, or HUB_CONFIG) and honours
HUB_* overrides. Errors are one line on stderr, ``hub: <what>; <how to fix>``, with exit
code 2 for bad usage or input and 1 for a failed check or a refused operation.

Other modules add their command groups with ``main.add_command(...)``; the optional
ones are registered at the bottom of this file.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click

from hub import create_app, migrations, packets
from hub import demo as demo_mod
from hub.accounts import service as accounts
from hub.cli.audit import audit
from hub.cli.client import client
from hub.cli.reports import reports
from hub.cli.retention import retention
from hub.cli.context import HubCliError, HubCommand, HubGroup, command_context, config_option
from hub.cli.scheduling import (
    escalate_command,
    scheduler_command,
    start_embedded_scheduler,
)
from hub.cli.sms import sms
from hub.cli.totp import totp
from hub.config import PRIVATE_UMASK, ensure_demo_secret, lock_down_files
from hub.db import session_scope
from hub.directory import service as directory
from hub.vocabulary import (
    CONTACT_ROLES,
    DEFAULT_LANGUAGE,
    LANGUAGES,
    ROLES,
    default_contact_role,
)


@click.group(cls=HubCommand)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="config.toml to use (default ./config.toml or HUB_CONFIG).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """refhub: the referral hub for counter-trafficking agencies."""
    os.umask(PRIVATE_UMASK)  # every file a hub command writes is its user's only
    ctx.ensure_object(dict)
    if config_path is not None:
        ctx.obj["config"] = config_path


# --- plumbing -----------------------------------------------------------------------------------


def _secret_from_env_or_prompt(env_name: str, prompt: str, *, confirm: bool) -> str:
    value = os.environ.get(env_name)
    if value:
        return value
    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)


def _print_sync(report: dict) -> None:
    parts = [f"{report['agencies']} agencies"]
    for key in ("added", "updated", "deactivated"):
        if report[key]:
            parts.append(f"{key} {', '.join(report[key])}")
    contacts = [f"{report['contacts_' + k]} {k}" for k in ("added", "updated", "deactivated") if report["contacts_" + k]]
    if contacts:
        parts.append("contacts " + ", ".join(contacts))
    click.echo("agencies synced: " + "; ".join(parts))


# --- hub init -------------------------------------------------------------------------------------


@main.command("init")
@config_option
@click.option("--demo", is_flag=True, help="Also add demo users, two demo agency systems, and print the logins.")
def init_cmd(demo: bool) -> None:
    """Create or upgrade the database, sync agencies/, enrol agencies that have no keys."""
    ctx = command_context()
    settings = ctx.settings
    if demo and settings.mode == "production":
        raise HubCliError("--demo adds users with a shared password and is refused in production mode;"
                          " run `hub init` and add users with `hub users add`", 2)
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    if settings.mode == "demo":
        written = ensure_demo_secret(settings)
        if written is not None:
            click.echo(f"demo mode: generated a secret key in {written} (set HUB_SECRET_KEY in production)")
    migrations.upgrade(settings.database_url)
    sessions = ctx.sessions
    clock = ctx.clock
    with session_scope(sessions) as s:
        _print_sync(directory.sync_agencies(s, settings.agencies_dir, clock))

    fresh: dict = {}
    codes: dict[str, str] = {}
    with session_scope(sessions) as s:
        for agency in directory.list_agencies(s):
            if not directory.is_enrolled(s, agency.id):
                fresh[agency.id], codes[agency.id] = accounts.enroll_agency(s, agency.id, clock=clock,
                                                                             keys_dir=settings.keys_dir)
        if demo and codes:
            # Written before the commit: a code must never be lost for keys that were stored.
            codes_path = demo_mod.save_recovery_codes(settings.instance_dir, codes)
    if codes and demo:
        click.echo(f"enrolled {len(codes)} agencies; their recovery codes are in {codes_path} (demo only)")
    elif codes:
        click.echo("enrolled agencies. Each recovery code is shown once: store it offline, it is the only way"
                   " to recover the agency's key ring.")
        for agency_id, code in codes.items():
            click.echo(f"  {agency_id:<14} {code}")
    else:
        click.echo("every agency already has keys")

    if demo:
        _init_demo(settings, sessions, clock, fresh)
    lock_down_files(settings)


def _init_demo(settings, sessions, clock, fresh: dict) -> None:
    password = demo_mod.demo_password(settings.instance_dir)
    codes = demo_mod.read_recovery_codes(settings.instance_dir)
    with session_scope(sessions) as s:
        rings = demo_mod.RingSource(s, fresh, codes)
        totp_secret = demo_mod.demo_totp_secret(settings.instance_dir)
        logins = demo_mod.add_demo_users(s, rings, password, clock=clock, totp_secret=totp_secret,
                                         secret_key=settings.secret_key,
                                         totp_roles=settings.security.require_totp_roles)
        systems = demo_mod.write_agency_systems(s, rings, password, settings.instance_dir, clock=clock)
    created = sum(1 for l in logins if l.created)
    click.echo(f"\ndemo logins ({created} new) for {settings.public_base_url}")
    needs_code = set(settings.security.require_totp_roles)
    for login in logins:
        click.echo(f"  {login.username:<28} {login.role}" + ("  (+ TOTP code)" if login.role in needs_code else ""))
    click.echo(f"password for every demo login: {password}  (kept in "
               f"{settings.instance_dir / demo_mod.PASSWORD_FILE})")
    if needs_code & {login.role for login in logins}:
        click.echo(f"TOTP secret for every demo login marked (+ TOTP code): {totp_secret}  (kept in "
                   f"{settings.instance_dir / demo_mod.TOTP_FILE})")
        click.echo("  add it to an authenticator app, or print the current code with `hub demo-code`; otpauth URI:")
        click.echo(f"  otpauth://totp/refhub:demo?secret={totp_secret}&issuer=refhub")
    if systems:
        click.echo("\ndemo agency systems for `hub client` (key ring passphrase: the demo password above):")
        for agency_id, (token_path, ring_path) in systems.items():
            click.echo(f"  {agency_id:<14} --token \"$(cat {token_path})\" --keyring {ring_path}")
        click.echo("  e.g. HUB_KEYRING_PASSPHRASE=<demo password> hub client inbox --hub "
                   f"{settings.public_base_url} --token ... --keyring ...")


@main.command("demo-code")
@config_option
def demo_code_cmd() -> None:
    """Print the TOTP code of the demo logins now (demo mode only)."""
    ctx = command_context()
    if ctx.settings.mode != "demo":
        raise HubCliError("demo-code is for the demo only; in production each member has their own authenticator")
    code = demo_mod.demo_code(ctx.settings.instance_dir, ctx.clock.now())
    if code is None:
        raise HubCliError("no demo TOTP secret yet; run `hub init --demo` (or `make run`) first")
    click.echo(code)


# --- hub serve ------------------------------------------------------------------------------------


@main.command("serve")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def serve_cmd(host: str, port: int) -> None:
    """Run the development server (the embedded demo) with one in-process scheduler.

    In demo mode the links in texts follow the address served (unless HUB_PUBLIC_BASE_URL says
    otherwise), so the demo's one-tap links work on any port.
    """
    ctx = command_context()
    settings = ctx.settings
    if settings.mode == "demo" and not os.environ.get("HUB_PUBLIC_BASE_URL"):
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # nosec B104: a comparison; binds nothing
        settings = dataclasses.replace(settings, public_base_url=f"http://{shown}:{port}")
    app = create_app(settings, engine=ctx.engine, clock=ctx.clock, gateway=ctx.gateway)
    lock_down_files(settings)
    # One in-process scheduler for the embedded demo; gunicorn workers never start one (wsgi.py).
    # The reloader would fork a second process, and with it a second scheduler: keep it off.
    scheduler = start_embedded_scheduler(app)
    try:
        app.run(host=host, port=port, use_reloader=False)
    finally:
        scheduler.shutdown(wait=False)


# --- hub agencies ---------------------------------------------------------------------------------


@main.group("agencies", cls=HubGroup)
def agencies_group() -> None:
    """The network directory (agencies/*.toml) and agency keys."""


@agencies_group.command("sync")
@config_option
def agencies_sync() -> None:
    """Load agencies/*.toml into the directory (idempotent)."""
    ctx = command_context()
    settings = ctx.settings
    with session_scope(ctx.sessions) as s:
        _print_sync(directory.sync_agencies(s, settings.agencies_dir, ctx.clock))


@agencies_group.command("enroll")
@config_option
@click.argument("agency_id")
@click.option("--export", "export_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the key ring, wrapped under a passphrase, for the agency's own system.")
def agencies_enroll(agency_id: str, export_path: str | None) -> None:
    """Make the agency's keys and print its recovery code once."""
    ctx = command_context()
    settings = ctx.settings
    passphrase = None
    if export_path:
        if Path(export_path).exists():
            raise HubCliError(f"{export_path} already exists; choose another file for --export", 2)
        passphrase = _secret_from_env_or_prompt("HUB_KEYRING_PASSPHRASE", "Passphrase for the exported key ring",
                                                confirm=True)
        if len(passphrase) < 12:
            raise HubCliError("the key ring passphrase must have at least 12 characters", 2)
    with session_scope(ctx.sessions) as s:
        ring, code = accounts.enroll_agency(s, agency_id, clock=ctx.clock, keys_dir=settings.keys_dir)
        if export_path:
            doc = packets.wrap_keyring(ring, holder=f"system:{agency_id}", passphrase=passphrase)
            fd = os.open(export_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2)
                fh.write("\n")
    click.echo(f"enrolled {agency_id}; public keys in {settings.keys_dir / (agency_id + '.pub.json')}")
    if export_path:
        click.echo(f"agency-held key ring written to {export_path} (holder system:{agency_id})")
    click.echo(f"recovery code (shown once; store it offline): {code}")


# --- hub users ------------------------------------------------------------------------------------


@main.group("users", cls=HubGroup)
def users_group() -> None:
    """People who sign in."""


@users_group.command("add")
@config_option
@click.option("--agency", "agency_id", default=None, help="Agency id (not for a hub_admin).")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", required=True)
@click.option("--phone", default=None, help="E.164, e.g. +85512345678")
@click.option("--lang", default=DEFAULT_LANGUAGE, type=click.Choice(LANGUAGES), show_default=True)
@click.option("--username", default=None, help="Default: <agency>.<name>.")
def users_add(agency_id, role, name, phone, lang, username) -> None:
    """Add a user and print a one-time invitation link.

    The link also carries the agency's key ring, unlocked here with the agency's recovery
    code (HUB_RECOVERY_CODE or a prompt).
    """
    ctx = command_context()
    settings = ctx.settings
    with session_scope(ctx.sessions) as s:
        ring = None
        if agency_id is not None:
            directory.get_agency(s, agency_id)
            if directory.is_enrolled(s, agency_id):
                code = _secret_from_env_or_prompt("HUB_RECOVERY_CODE", f"Recovery code of {agency_id}", confirm=False)
                ring = accounts.recover_keyring(s, agency_id, code)
        user, token = accounts.add_user(s, agency_id=agency_id, role=role, name=name, username=username, phone=phone,
                                        lang=lang, clock=ctx.clock, keyring=ring)
    click.echo(f"added {user.username} ({role}{', ' + agency_id if agency_id else ''})")
    if agency_id is not None and ring is None:
        click.echo(f"note: {agency_id} is not enrolled, so this user cannot open packets yet", err=True)
    click.echo(f"invitation link (one use, 7 days): {settings.public_base_url}/invite/{token}")


# --- hub contacts ---------------------------------------------------------------------------------


@main.group("contacts", cls=HubGroup)
def contacts_group() -> None:
    """Phones the hub texts for an agency."""


@contacts_group.command("add")
@config_option
@click.option("--agency", "agency_id", required=True)
@click.option("--name", required=True)
@click.option("--phone", required=True, help="E.164, e.g. +85512345678")
@click.option("--duty", is_flag=True, help="Make this the duty contact (texted first).")
@click.option("--lang", default=DEFAULT_LANGUAGE, type=click.Choice(LANGUAGES), show_default=True)
@click.option("--role", default=None, type=click.Choice(CONTACT_ROLES),
              help="Default: officer at police, coordinator at committees, else caseworker.")
def contacts_add(agency_id, name, phone, duty, lang, role) -> None:
    """Add an SMS contact (or update the one with this number)."""
    ctx = command_context()
    with session_scope(ctx.sessions) as s:
        agency = directory.get_agency(s, agency_id)
        role = role or default_contact_role(agency.kind)
        contact = directory.add_contact(s, agency_id, name, phone, duty=duty, lang=lang, role=role, clock=ctx.clock)
        click.echo(f"contact {contact.id} of {agency_id}: {contact.phone} ({role}{', duty' if contact.duty else ''})")


# --- hub tokens -----------------------------------------------------------------------------------


@main.group("tokens", cls=HubGroup)
def tokens_group() -> None:
    """API tokens for agencies' own systems."""


@tokens_group.command("create")
@config_option
@click.option("--agency", "agency_id", required=True)
@click.option("--name", default="agency system", show_default=True)
def tokens_create(agency_id: str, name: str) -> None:
    """Print a new API token (shown once; the hub keeps only its hash)."""
    ctx = command_context()
    with session_scope(ctx.sessions) as s:
        token = accounts.create_token(s, agency_id, name, ctx.clock)
    click.echo(token)
    click.echo(f"token for {agency_id}: shown once, send it as 'Authorization: Bearer <token>'", err=True)


@tokens_group.command("revoke")
@config_option
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int) -> None:
    """Revoke an API token by its id."""
    ctx = command_context()
    with session_scope(ctx.sessions) as s:
        token = accounts.revoke_token(s, token_id, ctx.clock)
        click.echo(f"revoked token {token.id} ({token.prefix}...) of {token.agency_id}")


# --- the command groups that live in their own modules -------------------------------------------

for _command in (audit, client, escalate_command, scheduler_command, sms, reports, retention, totp):
    main.add_command(_command)
