"""Coordinators' figures (API.md ``GET /api/v1/reports/summary``), in SQL over metadata only.

Everything here reads the referral rows (state, times, receiving agency), the
directory (the receiving agency's province) and the ladder's record
(:class:`hub.escalation.models.LadderStep`); never a packet. The definitions are
API.md's, word for word:

- first answer: the recipient's first transition out of ``sent`` (acknowledged,
  accepted or declined). The lifecycle stamps ``acknowledged_at`` on the first
  of them, so ``first_answer_s = acknowledged_at - created_at``;
  ``decision_s = decided_at - created_at``.
- p50, p90 by nearest rank: the smallest value v such that at least that share
  of the values is <= v. Computed with ``row_number()`` over the sorted values:
  the value at rank ceil(p * n), i.e. the first row with ``rank * 100 >= p * n``
  (integers only), which is exactly PostgreSQL's ``percentile_disc`` and runs
  the same on SQLite.
- ``acceptance_rate``: accepted (whatever came after) over accepted plus declined.
- ``unanswered_share``: no first answer (whether still waiting, withdrawn or failed).
- ``late_share``: the first answer came after the ack deadline, or there is none
  and the deadline passed while the referral still waited (now, or when it was
  withdrawn; docs/design-notes.md "Reports").
- ``steps_fired``: per step index, the (referral, clock) pairs on which it fired.

Added to API.md's figures (additions, nothing renamed): ``on_time_share``, the share
answered by the ack deadline; ``first_answer_histogram`` (whole scope), first answers
per bucket of HISTOGRAM_S; ``taskforce``, the task force filter.

Times are whole seconds (each timestamp truncated to its second on both backends).
Cost follows the window: the scope is a set of receiving agencies (a province holds
a few), and ``ix_referral_to_created`` turns each into one range scan.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Integer

from hub import access
from hub.audit.service import record as audit
from hub.clock import ensure_utc, rfc3339
from hub.config import Settings, TaskForce
from hub.directory.models import Agency, Contact
from hub.errors import BadInput, Forbidden
from hub.escalation import service as escalation
from hub.escalation.models import LadderStep
from hub.notify.models import OutboxMessage
from hub.referrals import service as referrals
from hub.referrals.models import Referral
from hub.vocabulary import FINAL_STATES, OPEN_STATES, OUTCOMES, PROVINCES

STATES = OPEN_STATES + FINAL_STATES
DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366 + 1  # a few years at once; beyond that, ask twice
PERCENTILES = (50, 90)


# -- whole seconds since the epoch, the same on both backends ------------------------------------


class epoch_seconds(FunctionElement):
    """The UTC timestamp argument as whole seconds since 1970 (truncated); NULL stays NULL."""

    type = Integer()
    name = "epoch_seconds"
    inherit_cache = True


@compiles(epoch_seconds)
def _epoch_default(element, compiler, **kw):  # SQLite keeps naive UTC text
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch_seconds, "postgresql")
def _epoch_postgresql(element, compiler, **kw):
    return f"CAST(floor(extract(epoch FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


# -- the request: window and scope ----------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Whose referrals: all (national), or those received by the agencies of one province."""

    national: bool
    province: str | None  # the coordinator's own province, or the chosen one for the national view
    taskforce: TaskForce | None = None


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(text: str | None, name: str) -> dt.datetime | None:
    """A date (midnight UTC) or an RFC 3339 time with a zone; BadInput otherwise."""
    if text is None or text == "":
        return None
    text = text.strip()
    try:
        if _DATE.match(text):
            return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if value.tzinfo is None:
            raise ValueError
        return ensure_utc(value)
    except ValueError:
        raise BadInput(f"'{name}' must be a date like 2026-11-01 or a time like 2026-11-01T00:00:00Z",
                       code="invalid_field") from None


def window(start: str | dt.datetime | None, end: str | dt.datetime | None, now: dt.datetime) -> Window:
    """[start, end): default the 30 days up to now; ``end`` must come after ``start``."""
    start = parse_when(start, "from") if not isinstance(start, dt.datetime) else ensure_utc(start)
    end = parse_when(end, "to") if not isinstance(end, dt.datetime) else ensure_utc(end)
    try:
        if end is None:
            end = now if start is None else start + dt.timedelta(days=DEFAULT_DAYS)
        if start is None:
            start = end - dt.timedelta(days=DEFAULT_DAYS)
    except OverflowError:  # a window running past year 1 or 9999
        raise BadInput("'from' and 'to' must lie between the years 1 and 9999", code="invalid_field") from None
    if end <= start:
        raise BadInput("'to' must come after 'from'", code="invalid_field")
    if end - start > dt.timedelta(days=MAX_DAYS):
        raise BadInput(f"a report covers at most {MAX_DAYS} days; ask for a shorter window", code="invalid_field")
    return Window(start, end)


def scope_for(session: Session, principal, province: str | None, *, taskforce: str | None = None,
              settings: Settings | None = None) -> Scope:
    """The caller's scope: 403 for anyone but a coordinator; a provincial coordinator sees their province."""
    access.require(principal, "reports.view")
    national, own = referrals.coordinator_scope(session, principal)
    if province is not None and province not in PROVINCES:
        raise BadInput(f"'province' must be an ISO 3166-2:KH code such as KH-12, not {province!r}",
                       code="invalid_field")
    if not national:
        if province not in (None, own):
            raise Forbidden(f"your committee sees the referrals of {own} only", code="forbidden")
        province = own
    return Scope(national=national, province=province, taskforce=_taskforce(settings, taskforce))


def national_scope(province: str | None = None, *, taskforce: str | None = None,
                   settings: Settings | None = None) -> Scope:
    """The hub operator's scope (`hub reports summary` on the server): everything, or one province."""
    if province is not None and province not in PROVINCES:
        raise BadInput(f"--province must be an ISO 3166-2:KH code such as KH-12, not {province!r}",
                       code="invalid_field")
    return Scope(national=True, province=province, taskforce=_taskforce(settings, taskforce))


def _taskforce(settings: Settings | None, name: str | None) -> TaskForce | None:
    if not name:
        return None
    forces = settings.taskforces if settings is not None else {}
    if name not in forces:
        raise BadInput(f"'taskforce' must be one of: {', '.join(forces) or '(none configured)'}",
                       code="invalid_field")
    return forces[name]


def taskforce_clause(force: TaskForce) -> ColumnElement[bool]:
    """Referrals that are the task force's: one of its needs, or (child affairs) a child."""
    # ``needs`` is JSON text of a closed vocabulary: '"legal"' matches that need and nothing else.
    terms = [Referral.needs.like(f'%"{need}"%') for need in force.needs]
    if force.child:
        terms.append(Referral.child.is_(True))
    return sa.or_(*terms) if terms else sa.false()


def _referrals_in(taskforce: TaskForce | None, by_agency: bool) -> sa.Select:
    """The referrals of the window (bind parameters ``start``, ``end``) and scope, with the receiving
    agency's province: one row each. ``by_agency``: only those received by ``agencies`` (expanding)."""
    stmt = (sa.select(Referral.id.label("id"), Referral.to_agency_id.label("agency"),
                      Agency.province.label("province"), Referral.status.label("status"),
                      Referral.outcome.label("outcome"), Referral.created_at.label("created_at"),
                      Referral.acknowledged_at.label("answered_at"), Referral.decided_at.label("decided_at"),
                      Referral.ack_deadline_at.label("ack_deadline_at"), Referral.closed_at.label("closed_at"))
            .join(Agency, Agency.id == Referral.to_agency_id)
            .where(Referral.created_at >= sa.bindparam("start", type_=Referral.created_at.type),
                   Referral.created_at < sa.bindparam("end", type_=Referral.created_at.type)))
    if by_agency:
        # A province's receiving agencies, named: each one range scan of ix_referral_to_created. (Given
        # as a subquery instead, PostgreSQL reads the whole window of every province and filters.)
        stmt = stmt.where(Referral.to_agency_id.in_(sa.bindparam("agencies", expanding=True)))
    if taskforce is not None:
        stmt = stmt.where(taskforce_clause(taskforce))
    return stmt


# -- the figures -----------------------------------------------------------------------------------


def _empty(steps: Iterable[int]) -> dict[str, Any]:
    return {"referrals": {"total": 0, "by_status": {s: 0 for s in STATES}},
            "first_answer_s": {"count": 0, "p50": None, "p90": None},
            "decision_s": {"count": 0, "p50": None, "p90": None},
            "acceptance_rate": None, "unanswered_share": None, "late_share": None, "on_time_share": None,
            "steps_fired": {str(i): 0 for i in steps}, "outcomes": {o: 0 for o in OUTCOMES}}


def _rate(num: int, den: int) -> float | None:
    return None if not den else round(num / den, 4)


# Upper bounds (seconds, inclusive) of the time-to-first-answer histogram; the last bucket is open.
HISTOGRAM_S = (5 * 60, 15 * 60, 30 * 60, 60 * 60, 2 * 3600, 4 * 3600, 24 * 3600)
# The groupings of every figure: the whole scope, per receiving agency, per its province.
GROUPINGS = (("all", None), ("agency", "agency"), ("province", "province"))


def _base(taskforce: TaskForce | None, by_agency: bool):
    """The window's referrals with the per-referral facts every figure is built from (a CTE: read once)."""
    r = _referrals_in(taskforce, by_agency).subquery("r").c
    answered = r.answered_at
    now = sa.bindparam("now", type_=Referral.created_at.type)
    late = sa.or_(answered > r.ack_deadline_at,
                  sa.and_(answered.is_(None), r.ack_deadline_at <= sa.func.coalesce(r.closed_at, now)))

    def flag(cond):
        return sa.case((cond, 1), else_=0)

    return sa.select(
        r.id, r.agency, r.province, r.status, r.outcome,
        (epoch_seconds(answered) - epoch_seconds(r.created_at)).label("fa"),
        (epoch_seconds(r.decided_at) - epoch_seconds(r.created_at)).label("dec"),
        flag(sa.and_(r.decided_at.is_not(None), r.status != "declined")).label("accepted"),
        flag(r.status == "declined").label("declined"),
        flag(answered.is_(None)).label("unanswered"),
        flag(late).label("late"),
        flag(answered <= r.ack_deadline_at).label("on_time"),
    ).cte("base")


FLAGS = ("accepted", "declined", "unanswered", "late", "on_time")
# The columns of every branch of the summary's one statement, in order.
COLUMNS = (("kind", "key", "bucket", "total") + tuple(f"s_{s}" for s in STATES) + tuple(f"o_{o}" for o in OUTCOMES)
           + FLAGS + tuple(f"{m}_{x}" for m in ("fa", "dec") for x in ("count", *(f"p{p}" for p in PERCENTILES))))


def _branch(values: dict[str, Any]) -> list:
    """The branch's columns in COLUMNS order; those it does not compute are NULL."""
    return [values[name].label(name) if name in values else sa.cast(sa.null(), sa.Integer).label(name)
            for name in COLUMNS]


def _kind(kind: str):
    return sa.literal_column(f"'{kind}'", sa.String)  # one of GROUPINGS' fixed names, or "histogram"


def _key(column):
    return sa.cast(column, sa.String) if column is not None else sa.cast(sa.null(), sa.String)


def _figures_branch(base, kind: str, key: str | None) -> sa.Select:
    """One grouping's counts and nearest-rank percentiles (row_number over the sorted non-null values)."""
    part = [base.c[key]] if key else []
    windows = []
    for metric in ("fa", "dec"):
        value = base.c[metric]
        windows += [sa.func.row_number().over(partition_by=[*part, value.is_(None)], order_by=value)
                    .label(f"rn_{metric}"),
                    sa.func.count(value).over(partition_by=part or None).label(f"n_{metric}")]
    ranked = sa.select(base, *windows).subquery(f"ranked_{kind}")
    c = ranked.c
    group = c[key] if key else None
    values: dict[str, Any] = {"kind": _kind(kind), "key": _key(group), "total": sa.func.count()}
    values.update({f"s_{s}": sa.func.sum(sa.case((c.status == s, 1), else_=0)) for s in STATES})
    values.update({f"o_{o}": sa.func.sum(sa.case((c.outcome == o, 1), else_=0)) for o in OUTCOMES})
    values.update({f: sa.func.sum(c[f]) for f in FLAGS})
    for metric in ("fa", "dec"):
        value, rn, n = c[metric], c[f"rn_{metric}"], c[f"n_{metric}"]
        values[f"{metric}_count"] = sa.func.count(value)
        values.update({f"{metric}_p{p}": sa.func.min(sa.case((sa.and_(value.is_not(None), rn * 100 >= p * n), value)))
                       for p in PERCENTILES})
    stmt = sa.select(*_branch(values)).select_from(ranked)
    return stmt.group_by(group) if key else stmt


def _counts_branches(base, groupings) -> list[sa.Select]:
    """Steps fired per grouping and step (from one join of the ladder's record); the histogram."""
    fired = (sa.select(base.c.agency, base.c.province, LadderStep.step)
             .select_from(base.join(LadderStep, LadderStep.referral_id == base.c.id)).cte("fired"))
    out = []
    for kind, key in groupings:
        group = fired.c[key] if key else None
        stmt = sa.select(*_branch({"kind": _kind(kind), "key": _key(group), "bucket": fired.c.step,
                                   "total": sa.func.count()}))
        out.append(stmt.group_by(*([group] if key else []), fired.c.step))
    bucket = sa.case(*[(base.c.fa <= le, i) for i, le in enumerate(HISTOGRAM_S)], else_=len(HISTOGRAM_S))
    out.append(sa.select(*_branch({"kind": _kind("histogram"), "key": _key(None), "bucket": bucket,
                                   "total": sa.func.count()})).where(base.c.fa.is_not(None)).group_by(bucket))
    return out


_STATEMENTS: dict[tuple, sa.CompoundSelect] = {}


def statement(taskforce: TaskForce | None, by_agency: bool) -> sa.CompoundSelect:
    """The summary's one statement for a shape of scope, built once (its values are bind parameters)."""
    # A TaskForce holds its names in a dict (unhashable): its shape is what the statement is built from.
    shape = (by_agency, None if taskforce is None else (taskforce.id, taskforce.needs, taskforce.child))
    stmt = _STATEMENTS.get(shape)
    if stmt is None:
        base = _base(taskforce, by_agency)
        # One province's scope is its own by_province row: that grouping is the whole scope's.
        groupings = [g for g in GROUPINGS if not (by_agency and g[0] == "province")]
        stmt = _STATEMENTS[shape] = sa.union_all(*[_figures_branch(base, kind, key) for kind, key in groupings],
                                                 *_counts_branches(base, groupings))
    return stmt


def statement_params(session: Session, scope: Scope, win: Window, now: dt.datetime) -> tuple[sa.CompoundSelect,
                                                                                             dict[str, Any]]:
    """The statement of a summary and its values (a province: its receiving agencies, from the directory)."""
    params: dict[str, Any] = {"start": win.start, "end": win.end, "now": now}
    if scope.province is not None:
        params["agencies"] = list(session.scalars(sa.select(Agency.id).where(Agency.province == scope.province)
                                                  .order_by(Agency.id))) or [""]
    return statement(scope.taskforce, scope.province is not None), params


def _figures(session: Session, scope: Scope, win: Window, now: dt.datetime, steps: list[int]):
    """Every figure of every grouping in one statement reading the window once.

    Returns ({kind: {key: figures}}, histogram).
    """
    stmt, params = statement_params(session, scope, win, now)
    out: dict[str, dict[Any, dict]] = {kind: {} for kind, _key in GROUPINGS}
    histogram = [0] * (len(HISTOGRAM_S) + 1)
    counts = []
    for row in session.execute(stmt, params).mappings():
        if row["bucket"] is not None:
            counts.append(row)
            continue
        fig = _empty(steps)
        total = int(row["total"])
        if row["kind"] == "all" and total == 0:
            continue  # the whole-scope aggregate of an empty window: one row of zeros
        fig["referrals"] = {"total": total, "by_status": {s: int(row[f"s_{s}"] or 0) for s in STATES}}
        fig["outcomes"] = {o: int(row[f"o_{o}"] or 0) for o in OUTCOMES}
        acc, dec = int(row["accepted"] or 0), int(row["declined"] or 0)
        fig["acceptance_rate"] = _rate(acc, acc + dec)
        for name in ("unanswered", "late", "on_time"):
            fig[f"{name}_share"] = _rate(int(row[name] or 0), total)
        for metric, name in (("fa", "first_answer_s"), ("dec", "decision_s")):
            fig[name] = {"count": int(row[f"{metric}_count"]),
                         **{f"p{p}": _int(row[f"{metric}_p{p}"]) for p in PERCENTILES}}
        out[row["kind"]][row["key"]] = fig
    for row in counts:
        if row["kind"] == "histogram":
            histogram[int(row["bucket"])] = int(row["total"])
        else:
            out[row["kind"]][row["key"]]["steps_fired"][str(row["bucket"])] = int(row["total"])
    if scope.province is not None and None in out["all"]:
        out["province"] = {scope.province: out["all"][None]}
    return out, [{"le_s": le, "count": n} for le, n in zip((*HISTOGRAM_S, None), histogram)]


def _int(value) -> int | None:
    return None if value is None else int(value)


def ladder_steps(settings: Settings | None) -> list[int]:
    """Step indexes always shown (0 .. the longest configured ladder's last), even when none fired."""
    longest = max((len(p.ladder) for p in settings.policies.values()), default=4) if settings else 4
    return list(range(longest))


def summary(session: Session, scope: Scope, win: Window, now: dt.datetime, *, settings: Settings | None = None,
            actor: str, export: str | None = None) -> dict[str, Any]:
    """API.md's summary for the window and scope; one audit entry (ids and counts only)."""
    now = ensure_utc(now)
    steps = ladder_steps(settings)
    figures, histogram = _figures(session, scope, win, now, steps)
    whole = figures["all"].get(None) or _empty(steps)
    agencies, provinces = figures["agency"], figures["province"]
    for figs in (whole, *agencies.values(), *provinces.values()):
        figs["steps_fired"] = dict(sorted(figs["steps_fired"].items(), key=lambda kv: int(kv[0])))
    out = {"from": rfc3339(win.start), "to": rfc3339(win.end), "province": scope.province,
           "taskforce": scope.taskforce.id if scope.taskforce else None, **whole,
           "first_answer_histogram": histogram,
           "by_agency": [{"agency": a, **agencies[a]} for a in sorted(agencies)],
           "by_province": [{"province": p, **provinces[p]} for p in sorted(provinces, key=lambda p: (p is None, p))]}
    audit(session, at=now, actor=actor, action="report.export" if export else "report.summary",
          detail={"from": out["from"], "to": out["to"], "province": scope.province, "format": export or "json",
                  "taskforce": out["taskforce"], "national": scope.national,
                  "referrals": whole["referrals"]["total"], "agencies": len(agencies)})
    return out


def summary_for(session: Session, principal, now: dt.datetime, *, province: str | None = None,
                taskforce: str | None = None, start: str | None = None, end: str | None = None,
                settings: Settings | None = None, export: str | None = None) -> tuple[dict[str, Any], Scope]:
    """What a face asks for: the caller's scope (403 unless a coordinator), the window, the summary
    (audited). Returns the summary and the scope it covered."""
    scope = scope_for(session, principal, province, taskforce=taskforce, settings=settings)
    win = window(start, end, now)
    return summary(session, scope, win, now, settings=settings, actor=principal.display, export=export), scope


# -- CSV: one row per receiving agency ----------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet reads as text: '' for None, and a leading ' before = + - @ tab CR."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_rows(report: dict[str, Any]) -> list[list[str]]:
    """The header and one row per agency: the same figures as the JSON, flattened."""
    states = list(STATES)
    steps = list(report["steps_fired"])
    header = (["from", "to", "province", "agency", "referrals"] + [f"status_{s}" for s in states]
              + ["first_answer_count", "first_answer_p50_s", "first_answer_p90_s",
                 "decision_count", "decision_p50_s", "decision_p90_s",
                 "acceptance_rate", "unanswered_share", "late_share", "on_time_share"]
              + [f"step_{i}_fired" for i in steps] + [f"outcome_{o}" for o in OUTCOMES])
    rows = [header]
    for item in report["by_agency"]:
        fa, de = item["first_answer_s"], item["decision_s"]
        rows.append([report["from"], report["to"], report["province"], item["agency"], item["referrals"]["total"]]
                    + [item["referrals"]["by_status"][s] for s in states]
                    + [fa["count"], fa["p50"], fa["p90"], de["count"], de["p50"], de["p90"],
                       item["acceptance_rate"], item["unanswered_share"], item["late_share"],
                       item["on_time_share"]]
                    + [item["steps_fired"].get(i, 0) for i in steps] + [item["outcomes"][o] for o in OUTCOMES])
    return [[csv_cell(v) for v in row] for row in rows]


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(csv_rows(report))
    return buf.getvalue()


# -- the board: open escalations with who was texted ---------------------------------------------------


def board(session: Session, principal, now: dt.datetime, *, province: str | None = None,
          urgency: str | None = None, child: bool | None = None, taskforce: str | None = None,
          settings: Settings | None = None, limit: int = 200) -> tuple[list[dict[str, Any]], Scope]:
    """The coordinator's board: open escalations (hub.escalation.service.open_escalations, whose scope it
    keeps), filtered, each with the texts of its running clock (agency, role, step, delivery status);
    and the scope shown."""
    scope = scope_for(session, principal, province, taskforce=taskforce, settings=settings)
    if urgency not in (None, "urgent", "normal"):
        raise BadInput("'urgency' must be urgent or normal", code="invalid_field")
    rows = escalation.open_escalations(session, principal, now, limit=500)
    agencies = {a.id: a for a in session.scalars(sa.select(Agency))}
    picked = []
    for referral, notified in rows:
        recipient = agencies.get(referral.to_agency_id)
        where = recipient.province if recipient is not None else None
        if scope.province is not None and where != scope.province:
            continue
        if urgency is not None and referral.urgency != urgency:
            continue
        if child is not None and bool(referral.child) != child:
            continue
        if scope.taskforce is not None and not _in_taskforce(scope.taskforce, referral):
            continue
        picked.append((referral, notified, where))
    picked = picked[:limit]
    texts = _texts(session, [r for r, _n, _p in picked])
    out = []
    for referral, notified, where in picked:
        deadline = referral.deadline_at
        out.append({"id": referral.id, "code": referral.code, "from": referral.from_agency_id,
                    "to": referral.to_agency_id, "province": where, "urgency": referral.urgency,
                    "child": bool(referral.child), "needs": list(referral.needs or []), "status": referral.status,
                    "clock": referral.clock, "step": referral.step, "deadline_at": deadline,
                    "overdue_s": max(0, int((now - deadline).total_seconds())) if deadline else 0,
                    "waited_s": max(0, int((now - referral.created_at).total_seconds())),
                    "owner": referral.owner, "owned_at": referral.owned_at, "notified": notified,
                    "texts": texts.get((referral.id, referral.clock), [])})
    return out, scope


def _in_taskforce(force: TaskForce, referral) -> bool:
    return bool(set(referral.needs or []) & set(force.needs)) or (force.child and bool(referral.child))


def _texts(session: Session, referrals: list) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per (referral, clock): its ladder texts counted by step, agency, contact role and delivery status."""
    if not referrals:
        return {}
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    stmt = (sa.select(OutboxMessage.referral_id, OutboxMessage.clock, OutboxMessage.step, Contact.agency_id,
                      Contact.role, OutboxMessage.status, sa.func.count())
            .join(Contact, Contact.id == OutboxMessage.contact_id)
            .where(OutboxMessage.referral_id.in_([r.id for r in referrals]), OutboxMessage.step.is_not(None))
            .group_by(OutboxMessage.referral_id, OutboxMessage.clock, OutboxMessage.step, Contact.agency_id,
                      Contact.role, OutboxMessage.status)
            .order_by(OutboxMessage.step, Contact.agency_id, Contact.role, OutboxMessage.status))
    for rid, clock, step, agency, role, status, n in session.execute(stmt):
        out.setdefault((rid, clock), []).append({"step": step, "agency": agency, "role": role, "status": status,
                                                 "count": n})
    return out
