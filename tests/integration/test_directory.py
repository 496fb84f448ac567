"""The directory: agencies/*.toml sync, contacts and duty, beds, enrolment and recovery copies."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub import packets
from hub.access import SYSTEM, Principal
from hub.accounts import service as accounts
from hub.accounts.models import WrappedKeyRing
from hub.audit.models import AuditEntry
from hub.db import session_scope
from hub.directory import service as directory
from hub.directory.models import Agency, AgencyKey, Contact
from hub.errors import BadInput, Conflict, Invalid, NotFound
from hub.phones import InvalidPhone
from tests.factories import FAST_KDF

ROOT = Path(__file__).resolve().parents[2]

SHELTER_SYSTEM = Principal(kind="token", agency_id="pp-shelter-a", role=SYSTEM, token_id=1, agency_kind="shelter",
                           province="KH-12")


@pytest.fixture
def agencies_dir(tmp_path) -> Path:
    """A private copy of the demo network, safe to edit."""
    target = tmp_path / "agencies"
    shutil.copytree(ROOT / "agencies", target)
    return target


def _snapshot(sessions) -> tuple[list, list]:
    with session_scope(sessions) as s:
        agencies = [(a.id, a.kind, a.name_en, a.name_km, a.short_name, a.province, a.services, a.beds_total,
                     a.beds_available, a.active, a.updated_at) for a in s.scalars(sa.select(Agency).order_by(Agency.id))]
        contacts = [(c.id, c.agency_id, c.name, c.phone, c.lang, c.duty, c.role, c.active, c.source)
                    for c in s.scalars(sa.select(Contact).order_by(Contact.id))]
    return agencies, contacts


def _sync(sessions, path, clock) -> dict:
    with session_scope(sessions) as s:
        return directory.sync_agencies(s, path, clock)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# --- the demo network ---------------------------------------------------------------------------


def test_demo_network_loads_with_every_agency_of_api_md(db, agencies_dir, clock):
    report = _sync(db, agencies_dir, clock)
    assert set(report["added"]) == {
        "pp-ahtjp", "sr-ahtjp", "bm-police", "pp-shelter-a", "pp-shelter-b", "sr-shelter", "pp-legal-aid",
        "pp-dosvy", "sr-dosvy", "iom-pp", "pp-committee", "sr-committee", "bm-committee", "ncct"}
    with session_scope(db) as s:
        for agency in directory.list_agencies(s):
            contacts = directory.contacts_for(s, agency.id)
            assert len(directory.contacts_for(s, agency.id, duty_only=True)) == 1, agency.id
            assert all(c.phone.startswith("+447700900") for c in contacts), "demo numbers stay in the drama range"
            assert len(agency.short_name) <= 16
        assert directory.get_agency(s, "pp-shelter-a").beds_available == directory.get_agency(s, "pp-shelter-a").beds_total
        all_phones = [c.phone for c in s.scalars(sa.select(Contact))]
        assert len(all_phones) == len(set(all_phones))


def test_sync_twice_leaves_the_same_rows(db, agencies_dir, clock):
    _sync(db, agencies_dir, clock)
    first = _snapshot(db)
    clock.advance(hours=1)
    report = _sync(db, agencies_dir, clock)
    assert report["added"] == [] and report["updated"] == [] and report["contacts_added"] == 0
    assert _snapshot(db) == first


def test_sync_stores_phones_as_e164(db, agencies_dir, clock):
    _edit(agencies_dir / "pp-shelter-b.toml", 'phone = "+44 7700 900109"', 'phone = "+44 (0)7700-900 109"')
    _sync(db, agencies_dir, clock)
    with session_scope(db) as s:
        phones = {c.phone for c in directory.contacts_for(s, "pp-shelter-b")}
    assert "+447700900109" in phones


def test_sync_keeps_free_beds_of_a_known_shelter(db, agencies_dir, clock):
    _sync(db, agencies_dir, clock)
    with session_scope(db) as s:
        directory.set_capacity(s, SHELTER_SYSTEM, "pp-shelter-a", 3, clock=clock)
    _sync(db, agencies_dir, clock)
    with session_scope(db) as s:
        assert directory.get_agency(s, "pp-shelter-a").beds_available == 3
    _edit(agencies_dir / "pp-shelter-a.toml", "beds_total = 12", "beds_total = 2")
    _sync(db, agencies_dir, clock)
    with session_scope(db) as s:
        assert directory.get_agency(s, "pp-shelter-a").beds_available == 2  # never more free than there are


BAD_FIELDS = [
    ("pp-ahtjp.toml", 'kind = "police"', 'kind = "army"', "kind"),
    ("pp-ahtjp.toml", 'province = "KH-12"', 'province = "KH-99"', "province"),
    ("pp-ahtjp.toml", 'province = "KH-12"\n', "", "province"),
    ("pp-ahtjp.toml", 'short_name = "PP AHTJP"', 'short_name = "Phnom Penh AHTJP unit"', "short_name"),
    ("pp-ahtjp.toml", 'services = ["investigation"]', 'services = ["investigation", "magic"]', "services"),
    ("pp-ahtjp.toml", 'phone = "+44 7700 900101"', 'phone = "not a phone"', "contacts[0].phone"),
    ("pp-ahtjp.toml", 'phone = "+44 7700 900102"', 'phone = "+44 7700 900101"', "contacts"),
    ("pp-ahtjp.toml", "duty = false", "duty = true", "contacts"),
    ("pp-ahtjp.toml", 'lang = "km"', 'lang = "fr"', "contacts[0].lang"),
    ("pp-ahtjp.toml", 'role = "officer"', 'role = "boss"', "contacts[0].role"),
    ("pp-ahtjp.toml", 'id = "pp-ahtjp"', 'id = "pp-other"', "id"),
    ("pp-ahtjp.toml", 'kind = "police"', 'kind = "police"\ncolour = "blue"', "colour"),
    ("pp-shelter-a.toml", "beds_total = 12\n", "", "beds_total"),
    ("pp-shelter-a.toml", "beds_total = 12", "beds_total = -1", "beds_total"),
    ("pp-shelter-a.toml", 'km = "ផ្ទះសុវត្ថិភាពក្តីសង្ឃឹម ក (ភ្នំពេញ)"', 'km = "Hope Shelter A"', "names.km"),
]


@pytest.mark.parametrize("filename,old,new,field", BAD_FIELDS, ids=[f"{f}:{fld}" for f, _, _, fld in BAD_FIELDS])
def test_a_bad_field_names_file_and_field_and_changes_nothing(db, agencies_dir, clock, filename, old, new, field):
    _sync(db, agencies_dir, clock)
    before = _snapshot(db)
    # a good change in another file must not land either: the sync is all or nothing
    _edit(agencies_dir / "sr-shelter.toml", "beds_total = 10", "beds_total = 11")
    _edit(agencies_dir / filename, old, new)
    with pytest.raises(directory.DirectoryFileError) as err:
        _sync(db, agencies_dir, clock)
    assert filename in err.value.message and f"'{field}'" in err.value.message
    assert "\n" not in err.value.message
    assert _snapshot(db) == before


def test_broken_toml_is_reported_with_its_file(db, agencies_dir, clock):
    (agencies_dir / "iom-pp.toml").write_text('id = "iom-pp\n', encoding="utf-8")
    with pytest.raises(directory.DirectoryFileError, match=r"iom-pp\.toml: not valid TOML"):
        _sync(db, agencies_dir, clock)
    with session_scope(db) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Agency)) == 0


def test_an_empty_folder_is_refused(db, tmp_path, clock):
    (tmp_path / "empty").mkdir()
    with pytest.raises(directory.DirectoryFileError, match="no agency files"):
        _sync(db, tmp_path / "empty", clock)


def test_contact_removed_from_the_file_is_deactivated_not_deleted(db, agencies_dir, clock):
    _sync(db, agencies_dir, clock)
    path = agencies_dir / "pp-shelter-b.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:text.rindex("[[contacts]]")], encoding="utf-8")  # drop the last contact
    report = _sync(db, agencies_dir, clock)
    assert report["contacts_deactivated"] == 1
    with session_scope(db) as s:
        rows = s.scalars(sa.select(Contact).where(Contact.agency_id == "pp-shelter-b")).all()
        assert len(rows) == 2
        assert [c.phone for c in directory.contacts_for(s, "pp-shelter-b")] == ["+447700900109"]
    path.write_text(text, encoding="utf-8")  # back in the file: active again, same row
    _sync(db, agencies_dir, clock)
    with session_scope(db) as s:
        assert len(directory.contacts_for(s, "pp-shelter-b")) == 2
        assert s.scalar(sa.select(sa.func.count()).select_from(Contact).where(Contact.agency_id == "pp-shelter-b")) == 2


def test_contact_added_by_hand_survives_a_sync(db, agencies_dir, clock):
    _sync(db, agencies_dir, clock)
    with session_scope(db) as s:
        directory.add_contact(s, "pp-shelter-b", "Night Duty", "+44 7700 900900", lang="en", clock=clock)
    _sync(db, agencies_dir, clock)
    with session_scope(db) as s:
        assert "+447700900900" in [c.phone for c in directory.contacts_for(s, "pp-shelter-b")]


def test_agency_whose_file_is_gone_is_deactivated(db, agencies_dir, clock):
    _sync(db, agencies_dir, clock)
    (agencies_dir / "pp-legal-aid.toml").unlink()
    assert _sync(db, agencies_dir, clock)["deactivated"] == ["pp-legal-aid"]
    with session_scope(db) as s:
        assert "pp-legal-aid" not in [a.id for a in directory.list_agencies(s)]
        assert directory.get_agency(s, "pp-legal-aid").active is False


# --- contacts, duty, beds -------------------------------------------------------------------------


@pytest.fixture
def synced(db, settings, clock):
    _sync(db, settings.agencies_dir, clock)
    return db


def test_a_new_duty_contact_takes_the_duty_over(synced, clock):
    with session_scope(synced) as s:
        new = directory.add_contact(s, "pp-shelter-a", "Weekend Duty", "+44 7700 900950", duty=True, clock=clock)
        new_id = new.id
    with session_scope(synced) as s:
        duty = directory.contacts_for(s, "pp-shelter-a", duty_only=True)
        assert [c.id for c in duty] == [new_id]
        assert directory.contacts_for(s, "pp-shelter-a")[0].id == new_id  # the duty contact comes first


def test_adding_a_contact_with_a_bad_phone_stores_nothing(synced, clock):
    with pytest.raises(InvalidPhone):
        with session_scope(synced) as s:
            directory.add_contact(s, "pp-shelter-a", "Someone", "12", duty=True, clock=clock)
    with session_scope(synced) as s:
        assert len(directory.contacts_for(s, "pp-shelter-a")) == 2
        assert len(directory.contacts_for(s, "pp-shelter-a", duty_only=True)) == 1


def test_adding_a_contact_to_an_unknown_agency_is_not_found(synced, clock):
    with pytest.raises(NotFound):
        with session_scope(synced) as s:
            directory.add_contact(s, "nowhere", "Someone", "+44 7700 900951", clock=clock)


@pytest.mark.parametrize("beds,ok", [(0, True), (12, True), (5, True), (13, False), (-1, False)])
def test_capacity_stays_within_the_shelters_beds(synced, clock, beds, ok):
    if ok:
        with session_scope(synced) as s:
            directory.set_capacity(s, SHELTER_SYSTEM, "pp-shelter-a", beds, clock=clock)
        with session_scope(synced) as s:
            assert directory.get_agency(s, "pp-shelter-a").beds_available == beds
            entry = s.scalars(sa.select(AuditEntry).where(AuditEntry.action == "capacity.set")).one()
            assert entry.actor == "token:1" and entry.detail["beds_available"] == beds
    else:
        with pytest.raises(Invalid, match="0 to 12"):
            with session_scope(synced) as s:
                directory.set_capacity(s, SHELTER_SYSTEM, "pp-shelter-a", beds, clock=clock)
        with session_scope(synced) as s:
            assert directory.get_agency(s, "pp-shelter-a").beds_available == 12
            assert s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 0


def test_capacity_must_be_a_whole_number(synced, clock):
    with pytest.raises(BadInput):
        with session_scope(synced) as s:
            directory.set_capacity(s, SHELTER_SYSTEM, "pp-shelter-a", True, clock=clock)


def test_coordinators_by_province_and_national(synced):
    with session_scope(synced) as s:
        assert [a.id for a in directory.coordinator_agencies(s, "KH-12")] == ["pp-committee"]
        assert [a.id for a in directory.coordinator_agencies(s, "KH-17")] == ["sr-committee"]
        assert [a.id for a in directory.coordinator_agencies(s, "KH-1")] == ["bm-committee"]
        assert [a.id for a in directory.coordinator_agencies(s, None)] == ["ncct"]
        assert directory.coordinator_agencies(s, "KH-5") == []


# --- enrolment, bundles, recovery -------------------------------------------------------------------


def _enroll(sessions, settings, clock, agency="pp-shelter-a"):
    with session_scope(sessions) as s:
        return accounts.enroll_agency(s, agency, clock=clock, keys_dir=settings.keys_dir, kdf_params=FAST_KDF)


def test_enrolment_writes_the_bundle_file_and_stores_public_keys_only(synced, settings, clock):
    ring, code = _enroll(synced, settings, clock)
    path = settings.keys_dir / "pp-shelter-a.pub.json"
    on_disk = packets.PublicBundle.from_json(path.read_text())
    with session_scope(synced) as s:
        stored = directory.public_bundle(s, "pp-shelter-a")
        rows = s.scalars(sa.select(AgencyKey)).all()
    assert on_disk.to_dict() == stored.to_dict()
    assert {k.kid for k in stored.keys} == {k.kid for k in ring.keys}
    assert stored.current_seal_key().created_at == "2026-11-22T10:00:00Z"
    private = {k.private for k in ring.keys}
    assert all(bytes(r.public) not in private for r in rows)
    assert re.fullmatch(r"([A-Z2-7]{4}-){6}[A-Z2-7]{4}", code)


def test_recovery_copy_opens_with_the_code_and_not_with_another(synced, settings, clock):
    ring, code = _enroll(synced, settings, clock)
    _other_ring, other_code = _enroll(synced, settings, clock, "pp-shelter-b")
    with session_scope(synced) as s:
        recovered = accounts.recover_keyring(s, "pp-shelter-a", code.lower().replace("-", " "))
        assert recovered.to_json() == ring.to_json()
        with pytest.raises(Invalid, match="does not open"):
            accounts.recover_keyring(s, "pp-shelter-a", other_code)
        typo = code[:-1] + ("A" if code[-1] != "A" else "B")
        with pytest.raises(BadInput, match="typo"):
            accounts.recover_keyring(s, "pp-shelter-a", typo)
        doc = s.scalars(sa.select(WrappedKeyRing).where(WrappedKeyRing.holder == "recovery",
                                                        WrappedKeyRing.agency_id == "pp-shelter-a")).one().document
    assert doc["kdf"]["alg"] == "argon2id" and doc["holder"] == "recovery"


def test_enrolling_twice_is_refused_and_keeps_the_keys(synced, settings, clock):
    _enroll(synced, settings, clock)
    with session_scope(synced) as s:
        kids = {k.kid for k in directory.public_bundle(s, "pp-shelter-a").keys}
    with pytest.raises(Conflict, match="already enrolled"):
        _enroll(synced, settings, clock)
    with session_scope(synced) as s:
        assert {k.kid for k in directory.public_bundle(s, "pp-shelter-a").keys} == kids


def test_public_bundle_of_an_agency_without_keys_is_not_found(synced):
    with session_scope(synced) as s:
        with pytest.raises(NotFound, match="hub agencies enroll pp-dosvy"):
            directory.public_bundle(s, "pp-dosvy")
        with pytest.raises(NotFound):
            directory.public_bundle(s, "no-such-agency")


def test_storing_a_bundle_again_records_revocation_only(synced, clock, tmp_path):
    ring, bundle = packets.generate_keyring("pp-dosvy", created_at="2026-11-22T10:00:00Z")
    with session_scope(synced) as s:
        directory.store_public_bundle(s, bundle)
    revoked = packets.revoke_key(bundle, bundle.current_seal_key().kid, now="2026-11-23T10:00:00Z")
    with session_scope(synced) as s:
        directory.store_public_bundle(s, revoked)
        assert directory.public_bundle(s, "pp-dosvy").to_dict() == revoked.to_dict()
    stolen = packets.PublicBundle(agency="pp-legal-aid", keys=bundle.keys)
    with pytest.raises(Conflict):
        with session_scope(synced) as s:
            directory.store_public_bundle(s, stolen)
    path = directory.write_bundle_file(revoked, tmp_path / "keys")
    assert json.loads(path.read_text()) == revoked.to_dict()
