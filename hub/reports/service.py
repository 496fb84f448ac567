"""Coordinators' figures (API.md ``GET /api/v1/reports/summary``), in SQL over metadata only.

Everything here reads the referral rows (state, times, receiving agency), the
directory (the receiving agency's province) and the ladder's record as the referral
row keeps it (``referral.ladder_fired``); never a packet. The definitions are
API.md's, word for word:

- first answer: the recipient's first transition out of ``sent`` (acknowledged,
  accepted or declined). The lifecycle stamps ``acknowledged_at`` on the first
  of them, so ``first_answer_s = acknowledged_at - created_at``;
  ``decision_s = decided_at - created_at``.
- p50, p90 by nearest rank: the smallest value v such that at least that share
  of the values is <= v: PostgreSQL's ``percentile_disc``; on SQLite the value at rank
  ceil(p * n) of ``row_number()`` over the sorted values, i.e. the first row with
  ``rank * 100 >= p * n`` (integers only), which is the same.
- ``acceptance_rate``: accepted (whatever came after) over accepted plus declined.
- ``unanswered_share``: no first answer (whether still waiting, withdrawn or failed).
- ``late_share``: the first answer came after the ack deadline, or there is none
  and the deadline passed while the referral still waited (now, or when it was
  withdrawn; docs/design-notes.md "Reports").
- ``steps_fired``: per step index, the (referral, clock) pairs on which it fired, read from the
  bits of ``referral.ladder_fired`` (the ladder's record, kept on the row by the escalation).

Added to API.md's figures (additions, nothing renamed): ``on_time_share``, the share
answered by the ack deadline; ``first_answer_histogram`` (whole scope), first answers
per bucket of HISTOGRAM_S; ``taskforce``, the task force filter.

Times are whole seconds (each timestamp truncated to its second on both backends). A date
in a window is its midnight in ``[hub] timezone``. Cost follows the window: the scope is a
set of receiving agencies (a province holds a few), ``ix_referral_to_created`` turns each
into one range scan, and one statement reads those rows once (docs/design-notes.md "Reports").
"""
from __future__ import annotations

import csv
import datetime as dt
import functools
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
from hub.accounts.models import User
from hub.audit.service import record as audit
from hub.clock import days_later, ensure_utc, rfc3339, zone
from hub.config import Settings, TaskForce
from hub.directory.models import Agency, Contact
from hub.errors import BadInput, Forbidden
from hub.escalation import service as escalation
from hub.escalation.models import ladder_bit
from hub.notify.models import OutboxMessage
from hub.referrals import service as referrals
from hub.referrals.models import Referral
from hub.vocabulary import CLOCKS, FINAL_STATES, OPEN_STATES, OUTCOMES, PROVINCES

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
    # date_part is double precision: exact for microsecond timestamps' whole seconds, and far cheaper per row
    # than extract(), which is numeric since PostgreSQL 14.
    return f"CAST(floor(date_part('epoch', {compiler.process(element.clauses, **kw)})) AS BIGINT)"


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


def parse_when(text: str | None, name: str, tz: str | dt.tzinfo | None = None) -> dt.datetime | None:
    """A date (midnight in the hub's time zone ``tz``) or an RFC 3339 time with a zone; BadInput otherwise."""
    if text is None or text == "":
        return None
    text = text.strip()
    try:
        if _DATE.match(text):
            return ensure_utc(dt.datetime.fromisoformat(text).replace(tzinfo=zone(tz)))
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if value.tzinfo is None:
            raise ValueError
        return ensure_utc(value)
    except ValueError:
        raise BadInput(f"'{name}' must be a date like 2026-11-01 or a time like 2026-11-01T00:00:00Z",
                       code="invalid_field") from None


def window(start: str | dt.datetime | None, end: str | dt.datetime | None, now: dt.datetime, *,
           tz: str | dt.tzinfo | None) -> Window:
    """[start, end): a date is its midnight in ``tz`` (``[hub] timezone``); default the 30 days up to now;
    ``end`` must come after ``start``."""
    start = parse_when(start, "from", tz) if not isinstance(start, dt.datetime) else ensure_utc(start)
    end = parse_when(end, "to", tz) if not isinstance(end, dt.datetime) else ensure_utc(end)
    try:
        if end is None:
            end = now if start is None else days_later(start, DEFAULT_DAYS, tz)
        if start is None:
            start = days_later(end, -DEFAULT_DAYS, tz)
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


def _facts(taskforce: TaskForce | None, by_agency: bool, postgresql: bool) -> sa.Select:
    """The referrals of the window (bind parameters ``start``, ``end``, ``now``) and scope, one row each, with
    the facts every figure is built from: receiving agency (and its province, for the national view), state,
    outcome, whole seconds to the first answer and to the decision, the flags of the rates, the ladder steps
    fired (``referral.ladder_fired``'s bits). ``by_agency``: only those received by the agencies of the
    bind parameter ``province``."""
    t = Referral.created_at.type
    answered, created, deadline = Referral.acknowledged_at, Referral.created_at, Referral.ack_deadline_at
    now = sa.bindparam("now", type_=t)
    cols = [Referral.to_agency_id.label("agency"),
            (Agency.province if not by_agency else sa.cast(sa.null(), sa.String)).label("province"),
            Referral.status.label("status"), Referral.outcome.label("outcome"),
            (epoch_seconds(answered) - epoch_seconds(created)).label("fa"),
            (epoch_seconds(Referral.decided_at) - epoch_seconds(created)).label("dec"),
            sa.and_(Referral.decided_at.is_not(None), Referral.status != "declined").label("accepted"),
            sa.or_(answered > deadline,
                   sa.and_(answered.is_(None), deadline <= sa.func.coalesce(Referral.closed_at, now))).label("late"),
            (answered <= deadline).label("on_time"),
            Referral.ladder_fired.label("fired")]
    stmt = sa.select(*cols).where(Referral.created_at >= sa.bindparam("start", type_=t),
                                  Referral.created_at < sa.bindparam("end", type_=t))
    if by_agency:
        # A province's receiving agencies: each one range scan of ix_referral_to_created. On PostgreSQL as
        # ``= ANY(ARRAY(subquery))``, an init plan whose array is the index condition (as a semi-join, it
        # read the whole window of every province and filtered).
        agencies = sa.select(Agency.id).where(Agency.province == sa.bindparam("province", type_=sa.String))
        if postgresql:
            stmt = stmt.where(Referral.to_agency_id == sa.any_(sa.func.array(agencies.scalar_subquery())))
        else:
            stmt = stmt.where(Referral.to_agency_id.in_(agencies))
    else:
        stmt = stmt.join(Agency, Agency.id == Referral.to_agency_id)
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
METRICS = ("fa", "dec")


# The columns the counts are grouped by, beside the agency (and its province): every count of a state, an
# outcome or a ladder step is a sum of these groups' sizes (``_add_group``), done in Python.
GROUP_KEYS = ("status", "outcome", "fired")


def _counts(f) -> dict[str, Any]:
    """The counts of one group of ``f`` by agency and GROUP_KEYS that are not the keys' own: one pass over the
    window's referrals, no join, a dozen COUNT ... FILTER."""
    def n(cond):
        return sa.func.count().filter(cond)

    values: dict[str, Any] = {"total": sa.func.count()}
    values["accepted"] = n(f.c.accepted)
    values["late"] = n(f.c.late)
    values["on_time"] = n(f.c.on_time)
    for metric in METRICS:
        values[f"{metric}_count"] = sa.func.count(f.c[metric])
    lower = None
    for i, le in enumerate((*HISTOGRAM_S, None)):  # a NULL fa (no answer) compares to nothing: in no bucket
        values[f"h_{i}"] = n(sa.and_(*([f.c.fa > lower] if lower is not None else []),
                                     *([f.c.fa <= le] if le is not None else [])))
        lower = le
    return values


def _add_group(total: dict[str, int], row, steps: int) -> None:
    """Add one group's row (GROUP_KEYS and _counts') to ``total``, a grouping's counts."""
    size = int(row["total"])
    for name in ("total", "accepted", "late", "on_time", *(f"{m}_count" for m in METRICS),
                 *(f"h_{i}" for i in range(len(HISTOGRAM_S) + 1))):
        total[name] += int(row[name])
    total[f"s_{row['status']}"] += size
    if row["outcome"] is not None:
        total[f"o_{row['outcome']}"] += size
    if row["status"] == "declined":
        total["declined"] += size
    fired = int(row["fired"] or 0)
    if fired:
        for step in range(steps):  # (referral, clock) pairs: the step's bit on each clock
            total[f"step_{step}"] += size * (fired & _step_mask(step)).bit_count()


@functools.cache
def _step_mask(step: int) -> int:
    """The bits of referral.ladder_fired that say ``step`` fired, one per clock."""
    return sum(ladder_bit(clock, step) for clock in CLOCKS)


def _zero_counts(steps: int) -> dict[str, int]:
    names = ["total", "accepted", "declined", "late", "on_time", *(f"{m}_count" for m in METRICS),
             *(f"h_{i}" for i in range(len(HISTOGRAM_S) + 1)), *(f"s_{s}" for s in STATES),
             *(f"o_{o}" for o in OUTCOMES), *(f"step_{i}" for i in range(steps))]
    return dict.fromkeys(names, 0)


PERCENTILE_COLUMNS = tuple(f"{m}_p{p}" for m in METRICS for p in PERCENTILES)


def _branch(kind, key, values: dict[str, Any], names: tuple[str, ...]) -> sa.Select:
    """One grouping's row: ``kind`` (a name, or an expression giving it), ``key``, then every column of ``names``
    (NULL where not computed)."""
    return sa.select((sa.literal_column(f"'{kind}'", sa.String) if isinstance(kind, str) else kind).label("kind"),
                     (sa.cast(key, sa.String) if key is not None else sa.cast(sa.null(), sa.String)).label("key"),
                     (sa.cast(values["province"], sa.String) if "province" in values
                      else sa.cast(sa.null(), sa.String)).label("province"),
                     *[(values[n] if n in values else sa.cast(sa.null(), _TYPES.get(n, sa.BigInteger))).label(n)
                       for n in names])


_TYPES = {"status": sa.String, "outcome": sa.String}


def _statement(taskforce: TaskForce | None, by_agency: bool, steps: int, postgresql: bool) -> sa.CompoundSelect:
    """The summary's statement: the window's facts read once (a CTE), then

    - per receiving agency (and its province), state, outcome and ladder record: the counts. Every count
      of an agency, a province or the whole scope is a sum of these groups' (``_figures`` adds them up);
    - per agency, for the whole scope and (national view) per province: the percentiles, which are not
      sums: on PostgreSQL one GROUPING SETS aggregate (one sort), on SQLite a branch each.

    Percentiles by nearest rank: PostgreSQL's ``percentile_disc``; elsewhere (SQLite) the value at the first
    rank r, in ``row_number()`` order, with r * 100 >= p * n, which is the same thing
    (tests/integration/test_reports.py holds both to the figures computed by hand)."""
    f = _facts(taskforce, by_agency, postgresql).cte("f")
    names = GROUP_KEYS + tuple(_counts(f)) + PERCENTILE_COLUMNS
    groupings = [("agency", "agency"), ("all", None)] + ([] if by_agency else [("province", "province")])
    branches = []
    if postgresql:  # one sort for all the groupings: GROUPING SETS
        values = {f"{metric}_p{p}": sa.func.percentile_disc(p / 100).within_group(f.c[metric])
                  for metric in METRICS for p in PERCENTILES}
        sets = [sa.tuple_(f.c[key]) if key else sa.tuple_() for _kind, key in groupings]
        kind = sa.case((sa.func.grouping(f.c.agency) == 0, "agency"),
                       *([] if by_agency else [(sa.func.grouping(f.c.province) == 0, "province")]), else_="all")
        key = f.c.agency if by_agency else sa.func.coalesce(f.c.agency, f.c.province)  # NULL where grouped away
        branches.append(_branch(kind, key, values, names)
                        .select_from(f).group_by(sa.func.grouping_sets(*sets)))
    for kind, key in groupings if not postgresql else ():
        part = [f.c[key]] if key else []
        windows = []
        for metric in METRICS:
            value = f.c[metric]
            windows += [sa.func.row_number().over(partition_by=[*part, value.is_(None)], order_by=value)
                        .label(f"rn_{metric}"),
                        sa.func.count(value).over(partition_by=part or None).label(f"n_{metric}")]
        source = sa.select(f, *windows).subquery(f"ranked_{kind}")
        values = {}
        for metric in METRICS:
            value, rn, n = source.c[metric], source.c[f"rn_{metric}"], source.c[f"n_{metric}"]
            for p in PERCENTILES:
                values[f"{metric}_p{p}"] = sa.func.min(
                    sa.case((sa.and_(value.is_not(None), rn * 100 >= p * n), value)))
        stmt = _branch(kind, source.c[key] if key else None, values, names).select_from(source)
        branches.append(stmt.group_by(source.c[key]) if key else stmt)
    # The counts per agency and GROUP_KEYS in a grouping of their own: with no ordered-set aggregate it needs
    # no sort.
    keys = [f.c[k] for k in GROUP_KEYS]
    counts = {**_counts(f), "province": f.c.province, **dict(zip(GROUP_KEYS, keys))}
    branches.insert(0, _branch("counts", f.c.agency, counts, names).group_by(f.c.agency, f.c.province, *keys))
    return sa.union_all(*branches)


_STATEMENTS: dict[tuple, sa.Select | sa.CompoundSelect] = {}


def statement(taskforce: TaskForce | None, by_agency: bool, steps: int, dialect: str):
    """The summary's one statement for a shape of scope, built once (its values are bind parameters)."""
    # A TaskForce holds its names in a dict (unhashable): its shape is what the statement is built from.
    shape = (by_agency, None if taskforce is None else (taskforce.id, taskforce.needs, taskforce.child), steps,
             dialect == "postgresql")
    stmt = _STATEMENTS.get(shape)
    if stmt is None:
        stmt = _STATEMENTS[shape] = _statement(taskforce, by_agency, steps, dialect == "postgresql")
    return stmt


def statement_params(session: Session, scope: Scope, win: Window, now: dt.datetime,
                     steps: int = 4) -> tuple[Any, dict[str, Any]]:
    """The statement of a summary and its values."""
    params: dict[str, Any] = {"start": win.start, "end": win.end, "now": now}
    if scope.province is not None:
        params["province"] = scope.province
    dialect = session.get_bind().dialect.name
    return statement(scope.taskforce, scope.province is not None, steps, dialect), params


def _figures(session: Session, scope: Scope, win: Window, now: dt.datetime, steps: list[int]):
    """Every figure of every grouping from one statement reading the window once; the counts of each agency,
    each province and the whole scope are the sums of their groups' (agency, state, outcome, ladder record).

    Returns ({kind: {key: figures}}, histogram).
    """
    stmt, params = statement_params(session, scope, win, now, len(steps))
    sums: dict[tuple[str, Any], dict[str, int]] = {}
    percentiles: dict[tuple[str, Any], Any] = {}
    for row in session.execute(stmt, params).mappings():
        if row["kind"] == "counts":
            for target in (("agency", row["key"]), ("all", None), ("province", row["province"])):
                total = sums.get(target)
                if total is None:
                    total = sums[target] = _zero_counts(len(steps))
                _add_group(total, row, len(steps))
        else:
            percentiles[(row["kind"], row["key"])] = row
    out: dict[str, dict[Any, dict]] = {kind: {} for kind, _key in GROUPINGS}
    for (kind, key), row in sums.items():
        if kind == "province" and scope.province is not None:
            continue  # one province: the scope's own figures (below)
        out[kind][key] = _figure(row, percentiles.get((kind, key)) or {}, steps)
    whole = sums.get(("all", None))
    histogram = [int(whole[f"h_{i}"]) if whole else 0 for i in range(len(HISTOGRAM_S) + 1)]
    if scope.province is not None and None in out["all"]:
        out["province"] = {scope.province: out["all"][None]}
    return out, [{"le_s": le, "count": n} for le, n in zip((*HISTOGRAM_S, None), histogram)]


def _figure(row: dict[str, int], ranks, steps: list[int]) -> dict[str, Any]:
    """One grouping's figures from its summed counts and its percentiles."""
    fig = _empty(steps)
    total = row["total"]
    fig["referrals"] = {"total": total, "by_status": {s: row[f"s_{s}"] for s in STATES}}
    fig["outcomes"] = {o: row[f"o_{o}"] for o in OUTCOMES}
    acc, dec = row["accepted"], row["declined"]
    fig["acceptance_rate"] = _rate(acc, acc + dec)
    row = {**row, "unanswered": total - row["fa_count"]}  # no first answer: no time to it
    for name in ("unanswered", "late", "on_time"):
        fig[f"{name}_share"] = _rate(row[name], total)
    for metric, name in (("fa", "first_answer_s"), ("dec", "decision_s")):
        fig[name] = {"count": row[f"{metric}_count"],
                     **{f"p{p}": _int(ranks.get(f"{metric}_p{p}")) for p in PERCENTILES}}
    fig["steps_fired"] = {str(i): row[f"step_{i}"] for i in steps}
    return fig


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
    win = window(start, end, now, tz=settings.timezone if settings is not None else None)
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


BOARD_LIMIT = 200


def board(session: Session, principal, now: dt.datetime, *, province: str | None = None,
          urgency: str | None = None, child: bool | None = None, taskforce: str | None = None,
          settings: Settings | None = None, limit: int = BOARD_LIMIT) -> tuple[list[dict[str, Any]], Scope, bool]:
    """The coordinator's board: open referrals past their running clock's deadline or escalated (step >= 1),
    in the scope (the province of the receiving agency; the national committee all, or the chosen province),
    filtered by urgency, child and task force in the same statement, most overdue first, at most ``limit``;
    each with the texts of its running clock (agency, role, step, delivery status). Returns the rows, the
    scope shown, and whether more matched than ``limit``."""
    access.require(principal, "escalations.view")
    scope = scope_for(session, principal, province, taskforce=taskforce, settings=settings)
    if urgency not in (None, "urgent", "normal"):
        raise BadInput("'urgency' must be urgent or normal", code="invalid_field")
    stmt = (sa.select(Referral, Agency.province, User.agency_id)
            .join(Agency, Agency.id == Referral.to_agency_id)
            .outerjoin(User, User.id == Referral.owner_user_id)
            .where(Referral.status.in_(OPEN_STATES), Referral.clock.is_not(None),
                   sa.or_(Referral.deadline_at <= now, Referral.step >= 1)))
    if scope.province is not None:
        stmt = stmt.where(Agency.province == scope.province)
    if urgency is not None:
        stmt = stmt.where(Referral.urgency == urgency)
    if child is not None:
        stmt = stmt.where(Referral.child.is_(child))
    if scope.taskforce is not None:
        stmt = stmt.where(taskforce_clause(scope.taskforce))
    rows = session.execute(stmt.order_by(Referral.deadline_at, Referral.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    picked = [r for r, _p, _o in rows]
    notified = escalation.notified_counts(session, picked)
    texts, told = _texts(session, picked), _told(session, picked)
    out = []
    for (referral, where, owner_agency), count in zip(rows, notified):
        deadline = referral.deadline_at
        out.append({"id": referral.id, "code": referral.code, "from": referral.from_agency_id,
                    "to": referral.to_agency_id, "province": where, "urgency": referral.urgency,
                    "child": bool(referral.child), "needs": list(referral.needs or []), "status": referral.status,
                    "clock": referral.clock, "step": referral.step, "deadline_at": deadline,
                    "overdue_s": max(0, int((now - deadline).total_seconds())) if deadline else 0,
                    "waited_s": max(0, int((now - referral.created_at).total_seconds())),
                    "owner": referral.owner, "owned_at": referral.owned_at, "owner_user_id": referral.owner_user_id,
                    "owner_agency": owner_agency, "notified": count,
                    "texts": texts.get((referral.id, referral.clock), []), "told": told.get(referral.id, [])})
    return out, scope, more


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


def _told(session: Session, referrals: list) -> dict[str, list[dict[str, Any]]]:
    """Per referral: the texts telling the other coordinators it was taken, counted by delivery status."""
    if not referrals:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    stmt = (sa.select(OutboxMessage.referral_id, OutboxMessage.status, sa.func.count())
            .where(OutboxMessage.referral_id.in_([r.id for r in referrals]), OutboxMessage.template == "taken")
            .group_by(OutboxMessage.referral_id, OutboxMessage.status)
            .order_by(OutboxMessage.referral_id, OutboxMessage.status))
    for rid, status, n in session.execute(stmt):
        out.setdefault(rid, []).append({"status": status, "count": n})
    return out
