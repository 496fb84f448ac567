"""The escalation ladder, end to end: referrals submitted through the API, sweeps at injected times.

Every test reads the outbox (what the hub will text) and the referral row, on SQLite and PostgreSQL.
Urgent policy (config.toml): ack clock steps at +0 (duty), +30 min (whole agency), +1 h (provincial
committee), +2 h (national committee), then every hour; deadline 30 min; alert 5 min after it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import runpy
import threading
import time

import pytest
import sqlalchemy as sa

import hub.api.escalations  # noqa: F401  (registers the /escalations routes before any app exists)
from hub.db import session_scope
from hub.directory.models import Contact
from hub.escalation.notifier import LadderNotifier
from hub.escalation.service import sweep, sweep_batch
from hub.escalation import service as escalation
from hub.notify import service as notify
from hub.notify.models import AckToken, Alert, OutboxMessage
from hub.referrals.models import Referral
from tests.conftest import ROOT, T0

S = dt.timedelta(seconds=1)
M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)
SHELTER = "pp-shelter-a"
POLICE = "pp-ahtjp"


@pytest.fixture
def app(settings, engine, clock):
    """The app with the escalation engine as the lifecycle's notifier."""
    from hub import create_app

    app = create_app(settings, engine=engine, clock=clock, notifier=LadderNotifier(settings))
    app.config["TESTING"] = True
    return app


# -- helpers -------------------------------------------------------------------------------------


def texts(db, prefix: str = "step:", referral_id: str | None = None) -> list[dict]:
    """Queued texts whose dedupe key starts with ``prefix``, oldest first, with the contact's agency."""
    with db() as s:
        stmt = (sa.select(OutboxMessage, Contact.agency_id, Contact.phone)
                .join(Contact, Contact.id == OutboxMessage.contact_id)
                .where(OutboxMessage.dedupe_key.like(f"{prefix}%")).order_by(OutboxMessage.id))
        if referral_id:
            stmt = stmt.where(OutboxMessage.referral_id == referral_id)
        return [{"key": m.dedupe_key, "template": m.template, "agency": agency, "phone": phone, "clock": m.clock,
                 "step": m.step, "repeat": m.repeat, "body": m.body, "nonce": m.callback_nonce, "id": m.id}
                for m, agency, phone in s.execute(stmt)]


def steps(db, referral_id: str) -> list[tuple]:
    """(clock, step, repeat, agency) of every ladder text of the referral."""
    return [(t["clock"], t["step"], t["repeat"], t["agency"]) for t in texts(db, "step:", referral_id)]


def row(db, referral_id: str) -> Referral:
    with db() as s:
        return s.get(Referral, referral_id)


def sweep_at(db, settings, clock, when: dt.datetime):
    clock.set(when)
    return sweep(db, when, settings=settings)


def act(client, network, referral_id: str, verb: str, agency: str = SHELTER, **body):
    resp = client.post(f"/api/v1/referrals/{referral_id}/{verb}", json=body, headers=network.headers(agency))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def phones(db, agency: str) -> set[str]:
    with db() as s:
        return set(s.scalars(sa.select(Contact.phone).where(Contact.agency_id == agency, Contact.active.is_(True))))


# -- the ack ladder --------------------------------------------------------------------------------


def test_new_referral_texts_the_duty_contact_with_a_one_tap_link(db, submit, settings):
    ref = submit(urgency="urgent")
    sent = texts(db)
    assert [(t["agency"], t["template"], t["step"]) for t in sent] == [(SHELTER, "new_referral", 0)]
    assert f"{settings.public_base_url}/a/" in sent[0]["body"] and ref["code"] in sent[0]["body"]
    assert row(db, ref["id"]).step == 0


LADDER = [  # (when, step, agencies texted)
    (30 * M, 1, [SHELTER, SHELTER]),
    (60 * M, 2, ["pp-committee", "pp-committee"]),
    (120 * M, 3, ["ncct", "ncct"]),
]


@pytest.mark.parametrize("offset,step,agencies", LADDER, ids=[f"step{s}" for _, s, _ in LADDER])
def test_each_step_fires_at_its_time_and_not_before(db, submit, settings, clock, offset, step, agencies):
    ref = submit(urgency="urgent")
    for earlier, _, _ in LADDER:
        if earlier < offset:
            sweep_at(db, settings, clock, T0 + earlier)
    before = steps(db, ref["id"])
    sweep_at(db, settings, clock, T0 + offset - S)
    assert steps(db, ref["id"]) == before, "a step fired before its time"
    sweep_at(db, settings, clock, T0 + offset)
    new = steps(db, ref["id"])[len(before):]
    assert sorted(a for _, _, _, a in new) == agencies
    assert {(c, s, r) for c, s, r, _ in new} == {("ack", step, 0)}
    assert all(t["template"] == "escalated" for t in texts(db, f"step:{ref['id']}:ack:{step}:"))
    assert row(db, ref["id"]).step == step


def test_the_same_sweep_twice_sends_nothing_new(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    first = sweep_at(db, settings, clock, T0 + 2 * H)
    count = len(texts(db, ""))
    again = sweep_at(db, settings, clock, T0 + 2 * H)
    assert first.steps == 3 and again.claimed == 0 and again.messages == 0
    assert len(texts(db, "")) == count
    assert [s for _, s, _, _ in steps(db, ref["id"])] == [0, 1, 1, 2, 2, 3, 3]


def test_sweep_with_nothing_due_touches_nothing(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    version = row(db, ref["id"]).version
    report = sweep_at(db, settings, clock, T0 + 29 * M)
    assert report.claimed == 0 and row(db, ref["id"]).version == version


def test_recipient_contacts_on_the_ack_clock_get_one_tap_links_coordinators_do_not(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    sweep_at(db, settings, clock, T0 + 2 * H)
    for t in texts(db):
        onetap = "/a/" in t["body"]
        assert onetap == (t["agency"] == SHELTER), t
    with db() as s:
        tokens = s.scalars(sa.select(AckToken).where(AckToken.referral_id == ref["id"])).all()
    assert len(tokens) == 3 and {t.clock for t in tokens} == {"ack"}


def test_repeat_every_after_the_last_step(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    sweep_at(db, settings, clock, T0 + 2 * H)
    sweep_at(db, settings, clock, T0 + 3 * H - S)
    assert [r for _, s, r, _ in steps(db, ref["id"]) if s == 3] == [0, 0]
    sweep_at(db, settings, clock, T0 + 3 * H)
    sweep_at(db, settings, clock, T0 + 4 * H)
    repeats = [(r, a) for _, s, r, a in steps(db, ref["id"]) if s == 3]
    assert repeats == [(0, "ncct")] * 2 + [(1, "ncct")] * 2 + [(2, "ncct")] * 2
    assert (row(db, ref["id"]).repeat, row(db, ref["id"]).next_step_at) == (2, T0 + 5 * H)


def test_missed_repeats_after_downtime_collapse_into_one(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    sweep_at(db, settings, clock, T0 + 2 * H)
    sweep_at(db, settings, clock, T0 + 7 * H + 10 * M)  # the hub was down five hours
    assert sorted({r for _, s, r, _ in steps(db, ref["id"]) if s == 3}) == [0, 5]
    assert row(db, ref["id"]).next_step_at == T0 + 8 * H


def test_missed_steps_after_downtime_each_fire_once(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    report = sweep_at(db, settings, clock, T0 + 2 * H + M)
    assert report.steps == 3
    assert sorted({s for _, s, _, _ in steps(db, ref["id"])}) == [0, 1, 2, 3]


# -- reaching nobody -------------------------------------------------------------------------------


def _deactivate(db, agency: str, *, duty_only: bool = False) -> None:
    with session_scope(db) as s:
        stmt = sa.update(Contact).where(Contact.agency_id == agency)
        if duty_only:
            stmt = stmt.where(Contact.duty.is_(True))
        s.execute(stmt.values(active=False))


def test_a_step_reaching_nobody_moves_on_at_once(db, network, submit, settings, clock):
    _deactivate(db, SHELTER, duty_only=True)
    ref = submit(urgency="urgent")
    # step 0 (duty contact) reaches nobody: step 1 (the whole agency) is texted at creation
    assert steps(db, ref["id"]) == [("ack", 1, 0, SHELTER)]
    assert row(db, ref["id"]).step == 1
    assert row(db, ref["id"]).next_step_at == T0 + 35 * M  # the overdue alert; step 2 keeps its time


def test_a_province_without_coordinators_hands_over_to_the_national_committee(db, network, submit, settings, clock):
    _deactivate(db, "pp-committee")
    ref = submit(urgency="urgent")
    sweep_at(db, settings, clock, T0 + 30 * M)
    sweep_at(db, settings, clock, T0 + 60 * M)
    fired = steps(db, ref["id"])
    assert ("ack", 3, 0, "ncct") in fired and not any(s == 2 for _, s, _, _ in fired)
    assert row(db, ref["id"]).step == 3


def test_a_ladder_reaching_nobody_at_all_raises_a_no_contact_alert(db, network, submit, settings, clock):
    for agency in (SHELTER, "pp-committee", "ncct"):
        _deactivate(db, agency)
    ref = submit(urgency="urgent")
    assert steps(db, ref["id"]) == [] and row(db, ref["id"]).step == 3
    with db() as s:
        kinds = s.scalars(sa.select(Alert.kind).where(Alert.referral_id == ref["id"])).all()
    assert kinds == ["no_contact"]


# -- stopping the clock ----------------------------------------------------------------------------


def test_acknowledgement_stops_the_ladder_and_tells_everyone_notified(db, client, network, submit, settings, clock):
    ref = submit(urgency="urgent")
    sweep_at(db, settings, clock, T0 + 60 * M)  # duty, whole shelter, provincial committee
    notified = {t["phone"] for t in texts(db, "step:", ref["id"])}
    clock.set(T0 + 61 * M)
    act(client, network, ref["id"], "acknowledge")
    told = texts(db, "loop:", ref["id"])
    assert {t["phone"] for t in told} == notified | {"+447700900101"}  # plus the referring officer (duty)
    assert {t["template"] for t in told} == {"acknowledged"}
    assert all("Hope Shelter A" in t["body"] for t in told)
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AckToken).where(
            AckToken.referral_id == ref["id"], AckToken.voided_at.is_(None), AckToken.used_at.is_(None))) == 0
    before = len(texts(db, ""))
    sweep_at(db, settings, clock, T0 + 3 * H)  # past every ack step; the decide clock has not run out
    assert len(texts(db, "")) == before
    assert row(db, ref["id"]).clock == "decide"


def test_the_decide_clock_does_not_re_text_who_just_acknowledged(db, client, network, submit, settings, clock):
    ref = submit(urgency="urgent")
    clock.set(T0 + 5 * M)
    act(client, network, ref["id"], "acknowledge")
    r = row(db, ref["id"])
    assert (r.clock, r.step, r.next_step_at) == ("decide", 0, T0 + 5 * M + 2 * H)
    assert steps(db, ref["id"]) == [("ack", 0, 0, SHELTER)]
    sweep_at(db, settings, clock, T0 + 5 * M + 2 * H)  # the decide clock runs out: the whole agency
    assert steps(db, ref["id"])[1:] == [("decide", 1, 0, SHELTER)] * 2


def test_decline_stops_the_ladder_and_tells_the_sender(db, client, network, submit, settings, clock):
    ref = submit(urgency="urgent")
    sweep_at(db, settings, clock, T0 + 30 * M)
    clock.set(T0 + 31 * M)
    act(client, network, ref["id"], "decline", reason="no bed for a child this week")
    told = {(t["agency"], t["template"]) for t in texts(db, "loop:", ref["id"])}
    assert told == {(SHELTER, "declined"), (POLICE, "declined")}
    assert all("no bed" not in t["body"] for t in texts(db, ""))
    before = len(texts(db, ""))
    sweep_at(db, settings, clock, T0 + 10 * H)
    assert len(texts(db, "")) == before and row(db, ref["id"]).next_step_at is None


def test_withdrawal_stops_the_ladder_and_tells_the_recipient(db, client, network, submit, settings, clock):
    ref = submit(urgency="urgent")
    clock.set(T0 + 10 * M)
    act(client, network, ref["id"], "withdraw", agency=POLICE, reason="family found")
    told = {(t["agency"], t["template"]) for t in texts(db, "loop:", ref["id"])}
    assert (SHELTER, "withdrawn") in told
    before = len(texts(db, ""))
    sweep_at(db, settings, clock, T0 + 10 * H)
    assert len(texts(db, "")) == before


def test_the_arrive_clock_escalates_a_victim_who_never_reached_the_shelter(db, client, network, submit, settings,
                                                                           clock):
    ref = submit(urgency="urgent")
    clock.set(T0 + 10 * M)
    act(client, network, ref["id"], "accept")
    assert {(t["agency"], t["template"]) for t in texts(db, "loop:", ref["id"])} >= {(POLICE, "accepted")}
    accepted = T0 + 10 * M
    sweep_at(db, settings, clock, accepted + 24 * H - S)
    assert [c for c, *_ in steps(db, ref["id"])] == ["ack"]
    sweep_at(db, settings, clock, accepted + 24 * H)
    assert steps(db, ref["id"])[1:] == [("arrive", 1, 0, SHELTER)] * 2
    sweep_at(db, settings, clock, accepted + 24 * H + 30 * M)
    assert steps(db, ref["id"])[3:] == [("arrive", 2, 0, "pp-committee")] * 2
    clock.set(accepted + 25 * H)
    act(client, network, ref["id"], "start-care")
    assert {t["template"] for t in texts(db, f"loop:{ref['id']}:arrive:")} == {"taken"}
    before = len(texts(db, ""))
    sweep_at(db, settings, clock, accepted + 40 * H)
    assert len(texts(db, "")) == before


# -- delivery failures and the overdue alert -----------------------------------------------------------


def _report(db, nonce: str, status: str, now: dt.datetime) -> None:
    """Twilio's delivery report for the message at ``nonce``: it names the message (its MessageSid, here
    one made up from the nonce, as the text was never drained) and the number it went to."""
    with session_scope(db) as s:
        message = s.scalars(sa.select(OutboxMessage).where(OutboxMessage.callback_nonce == nonce)).one()
        sid = message.provider_id or "SM" + hashlib.sha256(nonce.encode()).hexdigest()[:32]
        notify.record_status(s, nonce, status, now, error_code="30003", on_failed=escalation.delivery_failed,
                             message_sid=sid, to_phone=message.to_phone)


def test_an_undelivered_text_of_the_current_step_moves_the_ladder_on(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    (first,) = texts(db, "step:", ref["id"])
    _report(db, first["nonce"], "undelivered", T0 + M)
    assert row(db, ref["id"]).next_step_at == T0 + M
    sweep_at(db, settings, clock, T0 + 2 * M)
    assert {s for _, s, _, _ in steps(db, ref["id"])} == {0, 1}
    sweep_at(db, settings, clock, T0 + 60 * M - S)
    assert {s for _, s, _, _ in steps(db, ref["id"])} == {0, 1}  # step 2 keeps its own time


def test_an_undelivered_text_of_an_earlier_step_changes_nothing(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    (first,) = texts(db, "step:", ref["id"])
    sweep_at(db, settings, clock, T0 + 30 * M)
    _report(db, first["nonce"], "failed", T0 + 31 * M)
    assert row(db, ref["id"]).next_step_at == T0 + 35 * M  # the overdue alert, then step 2 at +1 h
    sweep_at(db, settings, clock, T0 + 36 * M)
    assert {s for _, s, _, _ in steps(db, ref["id"])} == {0, 1}


def test_overdue_alert_is_raised_once_and_texts_nobody(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    sweep_at(db, settings, clock, T0 + 30 * M)
    sweep_at(db, settings, clock, T0 + 35 * M - S)
    with db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Alert)) == 0
    queued = len(texts(db, "", ref["id"]))
    report = sweep_at(db, settings, clock, T0 + 35 * M)
    assert (report.alerts, report.messages) == (1, 0)  # on the board and in /metrics, no text
    assert len(texts(db, "", ref["id"])) == queued
    for minutes in (36, 90, 200):
        sweep_at(db, settings, clock, T0 + minutes * M)
    with db() as s:
        alerts = s.scalars(sa.select(Alert).where(Alert.kind == "overdue")).all()
    assert [(a.referral_id, a.province) for a in alerts] == [(ref["id"], "KH-12")]
    assert {t["template"] for t in texts(db, "", ref["id"])} == {"new_referral", "escalated"}  # the ladder only


def test_a_coordinator_gets_one_text_when_the_alert_and_their_step_fall_in_one_sweep(db, submit, settings, clock):
    """After downtime the overdue alert and the provincial committee's step are due together: the
    committee hears about the referral once, from the ladder."""
    ref = submit(urgency="urgent")
    report = sweep_at(db, settings, clock, T0 + 60 * M)
    assert report.alerts == 1
    committee = [t for t in texts(db, "", ref["id"]) if t["agency"] == "pp-committee"]
    assert len(committee) == 2  # the committee's two contacts
    assert len({t["phone"] for t in committee}) == 2
    assert {(t["template"], t["step"]) for t in committee} == {("escalated", 2)}


# -- crashes -------------------------------------------------------------------------------------------


def test_an_aborted_sweep_loses_nothing(db, submit, settings, clock):
    ref = submit(urgency="urgent")
    clock.set(T0 + 2 * H)
    with db() as s:
        assert sweep_batch(s, clock.now(), settings=settings) == [ref["id"]]
        s.rollback()  # the process dies before commit
    assert steps(db, ref["id"]) == [("ack", 0, 0, SHELTER)] and row(db, ref["id"]).step == 0
    report = sweep(db, clock.now(), settings=settings)
    assert report.steps == 3
    assert [s for _, s, _, _ in steps(db, ref["id"])] == [0, 1, 1, 2, 2, 3, 3]


# -- coordinators ----------------------------------------------------------------------------------------


def test_coordinators_see_overdue_and_escalated_referrals_of_their_province(client, db, network, submit, settings,
                                                                             clock):
    late = submit(urgency="urgent")
    quiet = submit(urgency="normal")
    elsewhere = submit("sr-ahtjp", "sr-shelter", urgency="urgent", province="KH-17")
    sweep_at(db, settings, clock, T0 + 60 * M)
    got = client.get("/api/v1/escalations?scope=open", headers=network.headers("pp-committee")).get_json()
    assert [e["id"] for e in got["escalations"]] == [late["id"]]
    (item,) = got["escalations"]
    assert item["step"] == 2 and item["owner"] is None and item["notified"] == 4
    assert {"history", "code", "deadline_at"} <= set(item) and "packet" not in item
    national = client.get("/api/v1/escalations", headers=network.headers("ncct")).get_json()
    assert {e["id"] for e in national["escalations"]} == {late["id"], elsewhere["id"]}
    assert quiet["id"] not in {e["id"] for e in national["escalations"]}


def test_escalations_need_a_coordinator_and_scope_open(client, network, submit):
    submit(urgency="urgent")
    assert client.get("/api/v1/escalations?scope=all", headers=network.headers("pp-committee")).status_code == 400
    assert client.get("/api/v1/escalations", headers=network.headers(SHELTER)).status_code == 403
    assert client.get("/api/v1/escalations").status_code == 401


def test_a_coordinator_takes_an_escalation_and_the_others_are_told(client, db, network, submit, settings, clock):
    ref = submit(urgency="urgent")
    sweep_at(db, settings, clock, T0 + 2 * H)  # both committees texted
    resp = client.post(f"/api/v1/escalations/{ref['id']}/take", headers=network.headers("ncct"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["owner"] and resp.get_json()["id"] == ref["id"]
    told = texts(db, "take:", ref["id"])
    assert sorted(t["agency"] for t in told) == ["ncct", "ncct", "pp-committee", "pp-committee"]
    assert {t["template"] for t in told} == {"taken"} and all("NCCT" in t["body"] for t in told)
    again = client.post(f"/api/v1/escalations/{ref['id']}/take", headers=network.headers("ncct"))
    assert again.status_code == 200 and len(texts(db, "take:", ref["id"])) == 4
    listed = client.get("/api/v1/escalations", headers=network.headers("pp-committee")).get_json()["escalations"]
    assert listed[0]["owner"] == resp.get_json()["owner"]


def test_take_is_refused_outside_the_province_and_for_closed_referrals(client, db, network, submit, settings,
                                                                         clock):
    sr = submit("sr-ahtjp", "sr-shelter", urgency="urgent", province="KH-17")
    resp = client.post(f"/api/v1/escalations/{sr['id']}/take", headers=network.headers("pp-committee"))
    assert resp.status_code == 404
    ref = submit(urgency="urgent")
    act(client, network, ref["id"], "decline", reason="full")
    assert client.post(f"/api/v1/escalations/{ref['id']}/take",
                       headers=network.headers("pp-committee")).status_code == 409
    assert client.post("/api/v1/escalations/not-a-uuid/take", headers=network.headers("ncct")).status_code == 404


# -- the command line and the scheduler -------------------------------------------------------------------


def test_hub_escalate_once_sweeps_as_if_at_now(db, submit, settings):
    from click.testing import CliRunner

    from hub.cli.scheduling import escalate_command

    ref = submit(urgency="urgent")
    env = {"HUB_DATABASE_URL": settings.database_url, "HUB_SECRET_KEY": settings.secret_key}
    result = CliRunner(env=env).invoke(
        escalate_command, ["--once", "--now", "2026-11-22T10:30:00Z", "--config", str(settings.config_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["now"] == "2026-11-22T10:30:00Z" and report["claimed"] == 1 and report["messages"] == 2
    assert row(db, ref["id"]).step == 1
    bad = CliRunner(env=env).invoke(escalate_command, ["--once", "--now", "yesterday",
                                                       "--config", str(settings.config_path)])
    assert bad.exit_code == 2


def test_creating_the_app_as_gunicorn_does_starts_no_scheduler(settings, monkeypatch):
    monkeypatch.setenv("HUB_CONFIG", str(settings.config_path))
    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_SECRET_KEY", settings.secret_key)
    before = set(threading.enumerate())
    namespace = runpy.run_path(str(ROOT / "wsgi.py"))
    time.sleep(0.2)
    assert namespace["app"].name == "hub"
    started = [t.name for t in set(threading.enumerate()) - before]
    assert started == [], f"create_app started threads: {started}"


def test_the_embedded_scheduler_sweeps_every_tick(app, db, submit, settings, clock):
    from hub.cli.scheduling import start_embedded_scheduler
    from hub.notify.gateways import ConsoleGateway
    import io

    ref = submit(urgency="urgent")
    clock.set(T0 + 30 * M)
    app.extensions["hub"].gateway = ConsoleGateway(io.StringIO())
    scheduler = start_embedded_scheduler(app)
    try:
        deadline = time.monotonic() + 30
        while row(db, ref["id"]).step < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert row(db, ref["id"]).step == 1
        assert {j.id for j in scheduler.get_jobs()} == {"escalation-sweep", "outbox-drain", "audit-sequencer",
                                                      "retention"}
    finally:
        scheduler.shutdown(wait=True)


def test_hub_scheduler_stops_cleanly_on_sigterm(db, submit, settings):
    import os
    import signal
    import subprocess
    import sys

    ref = submit(urgency="urgent")
    env = dict(os.environ, HUB_DATABASE_URL=settings.database_url, HUB_SECRET_KEY=settings.secret_key)
    code = "import sys; from hub.cli.scheduling import scheduler_command; scheduler_command(sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(settings.config_path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "hub scheduler: sweep and drain every 5 s" in proc.stderr.readline()
        time.sleep(1)  # the first tick runs at once
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "hub scheduler: stopped" in err
    if dt.datetime.now(dt.timezone.utc) > T0 + 2 * H:  # the scheduler runs on the system clock
        assert row(db, ref["id"]).step == 3


def test_failed_placement_is_texted_to_the_referring_officer(client, network, submit, db):
    """The person never arrived: the police who referred must hear it, by text, at once."""
    ref = submit()
    h = network.headers("pp-shelter-a")
    assert client.post(f"/api/v1/referrals/{ref['id']}/accept", headers=h).status_code == 200
    assert client.post(f"/api/v1/referrals/{ref['id']}/fail", json={"reason": "did not arrive"},
                       headers=h).status_code == 200
    with db() as s:
        texts = s.scalars(sa.select(OutboxMessage).where(OutboxMessage.referral_id == ref["id"],
                                                         OutboxMessage.template == "failed")).all()
        police = {c.id for c in s.scalars(sa.select(Contact).where(Contact.agency_id == "pp-ahtjp"))}
        assert texts and all(t.contact_id in police for t in texts)
        assert all(ref["code"] in t.body and "did not arrive" not in t.body for t in texts)
