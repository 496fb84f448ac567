"""`hub audit verify` and `hub audit checkpoint` (API.md; PROTOCOL.md section 6)."""
from __future__ import annotations

import sys

import click

from hub.audit import keys, sequencer
from hub.audit.store import TreeDamaged
from hub.audit.verify import verify
from hub.cli.context import HubGroup, command_context, config_option


@click.group("audit", cls=HubGroup)
def audit() -> None:
    """The tamper-evident audit log: sequence and sign, or check it all."""


@audit.command("checkpoint")
@config_option
def checkpoint_command() -> None:
    """Sequence what is new and sign a checkpoint now (the scheduler does it every audit.checkpoint_every)."""
    ctx = command_context()
    try:
        report = sequencer.tick(ctx.sessions, ctx.clock.now(), settings=ctx.settings, block=True)
    except TreeDamaged as exc:
        click.echo(f"hub: the audit tree is damaged ({exc}); run `hub audit verify`", err=True)
        sys.exit(1)
    if report.skipped:
        click.echo(f"hub: nothing sequenced: {report.skipped}; try again", err=True)
        sys.exit(1)
    signed = f"signed checkpoint of size {report.checkpoint}" if report.checkpoint else "no new checkpoint"
    click.echo(f"sequenced {report.sequenced} entries; tree size {report.size}; {signed}")


@audit.command("verify")
@config_option
def verify_command() -> None:
    """Recompute every leaf, rebuild the tree, check every checkpoint; exit 1 naming the first bad one."""
    ctx = command_context()
    with ctx.sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            # One snapshot for the whole check, while the sequencer may be adding leaves.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        verdict = verify(session, verifier=keys.verifier_line(ctx.settings), now=ctx.clock.now(),
                         interval=ctx.settings.checkpoint_every)
    if not verdict.ok:
        click.echo(f"hub: audit log check failed: {verdict.problem}", err=True)
        sys.exit(1)
    rate = verdict.leaves / verdict.seconds if verdict.seconds else 0.0
    latest = verdict.latest if verdict.latest is not None else "none"
    click.echo(f"audit log verified: {verdict.entries} entries, {verdict.leaves} in the tree, "
               f"{verdict.waiting} waiting for a leaf index; {verdict.checkpoints} checkpoints "
               f"(latest size {latest}) signed by the hub's key; {rate:,.0f} entries/s")
