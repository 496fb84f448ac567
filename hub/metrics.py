"""GET /metrics: Prometheus text, computed from the tables at scrape time.

Figures come from the database, not from one process's memory, so every web
process answers the same numbers however many schedulers run. Labels carry
states and agency kinds only, never ids of people.
"""
from __future__ import annotations

import hmac
import ipaddress

import sqlalchemy as sa
from flask import Blueprint, Response, abort, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily

from hub.faces import current
from hub.notify.models import Alert, OutboxMessage
from hub.referrals.models import Referral
from hub.vocabulary import OPEN_STATES

metrics_bp = Blueprint("metrics", __name__)


class TableCollector:
    def __init__(self, ctx):
        self.ctx = ctx

    def collect(self):
        now = self.ctx.clock.now()
        with (self.ctx.readers or self.ctx.sessions)() as s:
            by_state = GaugeMetricFamily("refhub_referrals", "Referrals by state", labels=["state"])
            for state, n in s.execute(sa.select(Referral.status, sa.func.count()).group_by(Referral.status)):
                by_state.add_metric([state], n)
            yield by_state
            overdue = s.scalar(sa.select(sa.func.count()).select_from(Referral).where(
                Referral.status.in_(OPEN_STATES), Referral.deadline_at.is_not(None), Referral.deadline_at < now))
            yield GaugeMetricFamily("refhub_referrals_overdue", "Open referrals past their clock's deadline",
                                    value=overdue or 0)
            sms = GaugeMetricFamily("refhub_sms", "Outbox messages by status", labels=["status"])
            for status, n in s.execute(sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)):
                sms.add_metric([status], n)
            yield sms
            oldest = s.scalar(sa.select(sa.func.min(OutboxMessage.created_at)).where(
                OutboxMessage.status.in_(("queued", "sending"))))
            if oldest is not None and oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=now.tzinfo)
            yield GaugeMetricFamily("refhub_outbox_oldest_age_seconds", "Age of the oldest unsent message",
                                    value=(now - oldest).total_seconds() if oldest else 0.0)
            steps = GaugeMetricFamily("refhub_escalation_texts", "Ladder texts queued, by clock and step",
                                      labels=["clock", "step"])
            for clock, step, n in s.execute(
                    sa.select(OutboxMessage.clock, OutboxMessage.step, sa.func.count())
                    .where(OutboxMessage.step.is_not(None)).group_by(OutboxMessage.clock, OutboxMessage.step)):
                steps.add_metric([clock or "", str(step)], n)
            yield steps
            alerts = GaugeMetricFamily("refhub_alerts_open", "Coordinator alerts not yet resolved, by kind",
                                       labels=["kind"])
            for kind, n in s.execute(sa.select(Alert.kind, sa.func.count()).where(Alert.resolved_at.is_(None))
                                     .group_by(Alert.kind)):
                alerts.add_metric([kind], n)
            yield alerts


def allowed(settings, remote_addr: str | None, authorization: str) -> bool:
    """Whether this client may scrape: its address is in ``[metrics] allow``, or it sends
    ``Authorization: Bearer $HUB_METRICS_TOKEN``. (Behind a proxy the address is the proxy's: allow
    the proxy only if the proxy itself guards /metrics, or use the token.)"""
    token = settings.metrics_token
    scheme, _, given = authorization.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.metrics_allow)


@metrics_bp.get("/metrics")
def metrics():
    ctx = current()
    if not allowed(ctx.settings, request.remote_addr, request.headers.get("Authorization", "")):
        abort(404)  # as if there were no such page: a stranger learns nothing, not even that it exists
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TableCollector(current()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
