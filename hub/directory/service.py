"""The network directory: agencies from agencies/*.toml, their SMS contacts, beds and public keys.

Every function takes a session (and a clock where time matters) and leaves the
commit to the caller, so a failed sync or enrolment changes nothing.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub import access, packets
from hub.access import Principal
from hub.audit.service import record as audit
from hub.clock import Clock, parse_rfc3339, rfc3339
from hub.directory.models import AGENCY_KINDS, Agency, AgencyKey, Contact
from hub.errors import BadInput, Conflict, Invalid, NotFound
from hub.phones import InvalidPhone, normalize_phone

SERVICES = ("shelter", "medical", "psychosocial", "legal", "repatriation", "family_tracing", "interpreter",
            "investigation", "coordination")
from hub.vocabulary import CONTACT_ROLES, PROVINCES  # noqa: E402
from hub.vocabulary import LANGUAGES as LANGS  # noqa: E402

SHORT_NAME_MAX = 16
RECOVERY_HOLDER = "recovery"

_AGENCY_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_AGENCY_FIELDS = {"id", "kind", "short_name", "names", "province", "services", "beds_total", "contacts"}
_CONTACT_FIELDS = {"name", "phone", "lang", "duty", "role"}
_KHMER = re.compile(r"[\u1780-\u17FF]")
_DEFAULT_CONTACT_ROLE = {"police": "officer", "committee": "coordinator"}


class DirectoryFileError(Invalid):
    """An agencies/*.toml file that cannot be loaded; the message names the file and the field."""

    code = "invalid_directory_file"


# --- loading agencies/*.toml ----------------------------------------------------------------


@dataclass(frozen=True)
class _ContactSpec:
    name: str
    phone: str
    lang: str
    duty: bool
    role: str


@dataclass(frozen=True)
class _AgencySpec:
    id: str
    kind: str
    short_name: str
    name_en: str
    name_km: str
    province: str | None
    services: tuple[str, ...]
    beds_total: int | None
    contacts: tuple[_ContactSpec, ...]


def _text(value: Any, where: str, *, max_len: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _FieldError(where, "must be non-empty text")
    value = value.strip()
    if len(value) > max_len:
        raise _FieldError(where, f"is longer than {max_len} characters")
    return value


class _FieldError(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def _parse_contact(raw: Any, i: int, kind: str) -> _ContactSpec:
    where = f"contacts[{i}]"
    if not isinstance(raw, dict):
        raise _FieldError(where, "must be a table ([[contacts]])")
    unknown = set(raw) - _CONTACT_FIELDS
    if unknown:
        raise _FieldError(f"{where}.{sorted(unknown)[0]}", f"is not a contact field (known: {', '.join(sorted(_CONTACT_FIELDS))})")
    name = _text(raw.get("name"), f"{where}.name")
    if not isinstance(raw.get("phone"), str):
        raise _FieldError(f"{where}.phone", "is required, as text such as \"+855 12 345 678\"")
    try:
        phone = normalize_phone(raw["phone"])
    except InvalidPhone as exc:
        raise _FieldError(f"{where}.phone", f"is not usable: {exc.message}") from None
    lang = raw.get("lang", "km")
    if lang not in LANGS:
        raise _FieldError(f"{where}.lang", f"must be one of {', '.join(LANGS)}, not {lang!r}")
    duty = raw.get("duty", False)
    if not isinstance(duty, bool):
        raise _FieldError(f"{where}.duty", "must be true or false")
    role = raw.get("role", _DEFAULT_CONTACT_ROLE.get(kind, "caseworker"))
    if role not in CONTACT_ROLES:
        raise _FieldError(f"{where}.role", f"must be one of {', '.join(CONTACT_ROLES)}, not {role!r}")
    return _ContactSpec(name=name, phone=phone, lang=lang, duty=duty, role=role)


def _parse_agency(raw: dict, stem: str) -> _AgencySpec:
    unknown = set(raw) - _AGENCY_FIELDS
    if unknown:
        raise _FieldError(sorted(unknown)[0], f"is not an agency field (known: {', '.join(sorted(_AGENCY_FIELDS))})")
    agency_id = raw.get("id")
    if not isinstance(agency_id, str) or not _AGENCY_ID.match(agency_id):
        raise _FieldError("id", "must be lower-case letters, digits and dashes, such as \"pp-shelter-a\"")
    if agency_id != stem:
        raise _FieldError("id", f"is {agency_id!r} but the file is named {stem}.toml; name the file after the id")
    kind = raw.get("kind")
    if kind not in AGENCY_KINDS:
        raise _FieldError("kind", f"must be one of {', '.join(AGENCY_KINDS)}, not {kind!r}")
    short_name = _text(raw.get("short_name"), "short_name", max_len=SHORT_NAME_MAX)
    if not short_name.isascii() or not short_name.isprintable():
        raise _FieldError("short_name", "must be plain ASCII (it goes into SMS texts)")
    names = raw.get("names")
    if not isinstance(names, dict) or set(names) != {"en", "km"}:
        raise _FieldError("names", "must be a table with exactly 'en' and 'km'")
    name_en = _text(names["en"], "names.en")
    name_km = _text(names["km"], "names.km")
    if not _KHMER.search(name_km):
        raise _FieldError("names.km", "must be written in Khmer script")
    province = raw.get("province")
    if province is None:
        if kind != "committee":
            raise _FieldError("province", "is required (only the national committee has none), e.g. \"KH-12\"")
    elif province not in PROVINCES:
        raise _FieldError("province", f"must be an ISO 3166-2:KH code from KH-1 to KH-25, not {province!r}")
    services = raw.get("services")
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise _FieldError("services", f"must be a list drawn from {', '.join(SERVICES)}")
    for s in services:
        if s not in SERVICES:
            raise _FieldError("services", f"has {s!r}, which is not one of {', '.join(SERVICES)}")
    if len(set(services)) != len(services):
        raise _FieldError("services", "lists a service twice")
    beds_total = raw.get("beds_total")
    if beds_total is not None and (type(beds_total) is not int or not 0 <= beds_total <= 10_000):
        raise _FieldError("beds_total", "must be a whole number from 0 to 10000")
    if kind == "shelter" and beds_total is None:
        raise _FieldError("beds_total", "is required for a shelter")
    contacts_raw = raw.get("contacts", [])
    if not isinstance(contacts_raw, list):
        raise _FieldError("contacts", "must be a list of [[contacts]] tables")
    contacts = tuple(_parse_contact(c, i, kind) for i, c in enumerate(contacts_raw))
    phones = [c.phone for c in contacts]
    if len(set(phones)) != len(phones):
        raise _FieldError("contacts", "lists the same phone number twice")
    if contacts and sum(c.duty for c in contacts) != 1:
        raise _FieldError("contacts", "must have exactly one contact with duty = true (the one texted first)")
    return _AgencySpec(id=agency_id, kind=kind, short_name=short_name, name_en=name_en, name_km=name_km,
                       province=province, services=tuple(services), beds_total=beds_total, contacts=contacts)


def load_agency_files(agencies_dir: Path) -> list[_AgencySpec]:
    """Read and validate every agencies/*.toml; the first problem raises DirectoryFileError."""
    agencies_dir = Path(agencies_dir)
    files = sorted(agencies_dir.glob("*.toml")) if agencies_dir.is_dir() else []
    if not files:
        raise DirectoryFileError(f"no agency files (*.toml) in {agencies_dir}; check [paths] agencies in config.toml")
    specs = []
    for path in files:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DirectoryFileError(f"{path}: not valid TOML ({exc}); fix the file and sync again") from None
        try:
            specs.append(_parse_agency(raw, path.stem))
        except _FieldError as exc:
            raise DirectoryFileError(f"{path}: field '{exc.field}' {exc.problem}; fix the file and sync again") from None
    return specs


def sync_agencies(session: Session, agencies_dir: Path, clock: Clock) -> dict:
    """Load agencies/*.toml into the directory: add or update agencies and their contacts.

    Idempotent. Every file is validated before anything is written. Contacts that
    left a file are deactivated (never deleted: referrals and the audit log name
    them); contacts added by hand are left alone. An agency whose file is gone is
    deactivated. A new agency starts with all its beds free. Returns what changed.
    """
    specs = load_agency_files(agencies_dir)
    now = clock.now()
    report = {"agencies": len(specs), "added": [], "updated": [], "deactivated": [],
              "contacts_added": 0, "contacts_updated": 0, "contacts_deactivated": 0}
    existing = {a.id: a for a in session.scalars(sa.select(Agency))}
    for spec in specs:
        agency = existing.get(spec.id)
        values = {"kind": spec.kind, "name_en": spec.name_en, "name_km": spec.name_km, "short_name": spec.short_name,
                  "province": spec.province, "services": list(spec.services), "beds_total": spec.beds_total,
                  "active": True}
        if agency is None:
            agency = Agency(id=spec.id, beds_available=spec.beds_total, updated_at=now, **values)
            session.add(agency)
            report["added"].append(spec.id)
        else:
            changed = {k: v for k, v in values.items() if getattr(agency, k) != v}
            beds = agency.beds_available
            if spec.beds_total is None:
                beds = None
            elif beds is None or beds > spec.beds_total:
                beds = spec.beds_total  # newly a shelter, or fewer beds than it had free
            if beds != agency.beds_available:
                changed["beds_available"] = beds
            if changed:
                for k, v in changed.items():
                    setattr(agency, k, v)
                agency.updated_at = now
                report["updated"].append(spec.id)
        session.flush()
        _sync_contacts(session, agency, spec.contacts, report)
    listed = {s.id for s in specs}
    for agency_id, agency in existing.items():
        if agency_id not in listed and agency.active:
            agency.active = False
            agency.updated_at = now
            report["deactivated"].append(agency_id)
    session.flush()
    return report


def _sync_contacts(session: Session, agency: Agency, specs: tuple[_ContactSpec, ...], report: dict) -> None:
    rows = {c.phone: c for c in session.scalars(sa.select(Contact).where(Contact.agency_id == agency.id))}
    listed = {c.phone for c in specs}
    duty_phone = next((c.phone for c in specs if c.duty), None)
    for row in rows.values():
        deactivate = row.source == "file" and row.phone not in listed and row.active
        # The file names the duty contact; one added by hand gives the duty back at a sync.
        lose_duty = duty_phone is not None and row.phone != duty_phone and row.duty
        if deactivate:
            row.active, row.duty = False, False
            report["contacts_deactivated"] += 1
        elif lose_duty:
            row.duty = False
    session.flush()
    for spec in specs:
        values = {"name": spec.name, "lang": spec.lang, "duty": spec.duty, "role": spec.role, "active": True,
                  "source": "file"}
        row = rows.get(spec.phone)
        if row is None:
            session.add(Contact(agency_id=agency.id, phone=spec.phone, **values))
            report["contacts_added"] += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            report["contacts_updated"] += 1
    session.flush()


# --- reading the directory ------------------------------------------------------------------


def get_agency(session: Session, agency_id: str) -> Agency:
    agency = session.get(Agency, agency_id) if isinstance(agency_id, str) else None
    if agency is None:
        raise NotFound(f"no agency {agency_id!r} in the directory; see `hub agencies sync` or GET /api/v1/agencies",
                       code="unknown_agency")
    return agency


def list_agencies(session: Session) -> list[Agency]:
    """Active agencies, by id."""
    return list(session.scalars(sa.select(Agency).where(Agency.active.is_(True)).order_by(Agency.id)))


def contacts_for(session: Session, agency_id: str, *, duty_only: bool = False) -> list[Contact]:
    """Active contacts of an agency, the duty contact first."""
    stmt = sa.select(Contact).where(Contact.agency_id == agency_id, Contact.active.is_(True))
    if duty_only:
        stmt = stmt.where(Contact.duty.is_(True))
    return list(session.scalars(stmt.order_by(Contact.duty.desc(), Contact.id)))


def coordinator_agencies(session: Session, province: str | None) -> list[Agency]:
    """The committees coordinating ``province``; ``None`` means the national committee (no province)."""
    stmt = sa.select(Agency).where(Agency.kind == "committee", Agency.active.is_(True))
    stmt = stmt.where(Agency.province.is_(None) if province is None else Agency.province == province)
    return list(session.scalars(stmt.order_by(Agency.id)))


# --- contacts and capacity ------------------------------------------------------------------


def add_contact(session: Session, agency_id: str, name: str, phone: str, *, duty: bool = False, lang: str = "km",
                role: str = "caseworker", clock: Clock, actor: str = "hub") -> Contact:
    """Add an SMS contact by hand (or update the one with this number). A new duty contact takes the duty over."""
    agency = get_agency(session, agency_id)
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise BadInput("the contact's name must be text of 1 to 200 characters", code="invalid_field")
    if lang not in LANGS:
        raise BadInput(f"lang must be one of {', '.join(LANGS)}", code="invalid_field")
    if role not in CONTACT_ROLES:
        raise BadInput(f"role must be one of {', '.join(CONTACT_ROLES)}", code="invalid_field")
    e164 = normalize_phone(phone)
    now = clock.now()
    if duty:
        for other in session.scalars(sa.select(Contact).where(Contact.agency_id == agency.id, Contact.duty.is_(True))):
            other.duty = False
        session.flush()
    contact = session.scalar(sa.select(Contact).where(Contact.agency_id == agency.id, Contact.phone == e164))
    if contact is None:
        contact = Contact(agency_id=agency.id, phone=e164, source="manual")
        session.add(contact)
    contact.name, contact.lang, contact.role, contact.active = name.strip(), lang, role, True
    contact.duty = bool(duty) or (contact.duty if contact.id is not None else False)
    agency.updated_at = now
    session.flush()
    audit(session, at=now, actor=actor, action="contact.added",
          detail={"agency": agency.id, "contact_id": contact.id, "duty": contact.duty})
    return contact


def set_capacity(session: Session, principal: Principal, agency_id: str, beds: int, *, clock: Clock) -> Agency:
    """Set the agency's free beds: 0 up to its beds_total (when it has one). Audited as capacity.set.

    Only the agency's own caseworkers, admins and system may (``capacity.set``), from any face.
    """
    access.require(principal, "capacity.set", agency_id=agency_id)
    agency = get_agency(session, agency_id)
    if type(beds) is not int:
        raise BadInput("beds must be a whole number", code="invalid_field")
    if beds < 0 or (agency.beds_total is not None and beds > agency.beds_total):
        upper = f"{agency.beds_total} (its total)" if agency.beds_total is not None else "any number"
        raise Invalid(f"{agency.id} can have 0 to {upper} free beds, not {beds}", code="invalid_capacity")
    previous = agency.beds_available
    now = clock.now()
    agency.beds_available = beds
    agency.updated_at = agency.beds_updated_at = now
    audit(session, at=now, actor=principal.display, action="capacity.set",
          detail={"agency": agency.id, "beds_available": beds, "previous": previous})
    session.flush()
    return agency


# --- keys: public bundles, enrolment, recovery ------------------------------------------------


def public_bundle(session: Session, agency_id: str) -> packets.PublicBundle:
    """The agency's public bundle (PROTOCOL.md section 1) from the directory; NotFound if it has no keys."""
    agency = get_agency(session, agency_id)
    rows = session.scalars(sa.select(AgencyKey).where(AgencyKey.agency_id == agency.id)
                           .order_by(AgencyKey.created_at, sa.case((AgencyKey.use == "sign", 0), else_=1),
                                     AgencyKey.kid)).all()
    if not rows:
        raise NotFound(f"agency {agency.id} has no keys yet; enrol it with `hub agencies enroll {agency.id}`",
                       code="not_enrolled")
    return packets.PublicBundle(agency=agency.id, keys=[
        packets.PublicKey(kid=r.kid, use=r.use, alg=r.alg, public=bytes(r.public), created_at=rfc3339(r.created_at),
                          revoked_at=rfc3339(r.revoked_at) if r.revoked_at else None)
        for r in rows
    ])


def is_enrolled(session: Session, agency_id: str) -> bool:
    return session.scalar(sa.select(sa.func.count()).select_from(AgencyKey)
                          .where(AgencyKey.agency_id == agency_id)) > 0


def store_public_bundle(session: Session, bundle: packets.PublicBundle) -> None:
    """Add the bundle's keys to the directory and record revocations. A key is never moved or replaced."""
    agency = get_agency(session, bundle.agency)
    for key in bundle.keys:
        row = session.get(AgencyKey, key.kid)
        if row is None:
            session.add(AgencyKey(kid=key.kid, agency_id=agency.id, use=key.use, alg=key.alg, public=key.public,
                                  created_at=parse_rfc3339(key.created_at),
                                  revoked_at=parse_rfc3339(key.revoked_at) if key.revoked_at else None))
            continue
        if row.agency_id != agency.id or bytes(row.public) != key.public or row.use != key.use:
            raise Conflict(f"key {key.kid} is already in the directory with other contents or for another agency",
                           code="key_conflict")
        if key.revoked_at and row.revoked_at is None:
            row.revoked_at = parse_rfc3339(key.revoked_at)
    session.flush()


def write_bundle_file(bundle: packets.PublicBundle, keys_dir: Path) -> Path:
    """Write keys/<agency>.pub.json (atomically: a reader never sees half a file)."""
    keys_dir = Path(keys_dir)
    keys_dir.mkdir(parents=True, exist_ok=True)
    path = keys_dir / f"{bundle.agency}.pub.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(bundle.to_json() + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# A recovery code is a 128-bit random secret in base32, plus two check characters so that a
# typo is reported at once instead of after a slow Argon2id run; shown as 7 groups of 4.
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B"})


def new_recovery_code() -> str:
    secret = secrets.token_bytes(16)
    body = base64.b32encode(secret).decode().rstrip("=")  # 26 characters
    text = body + _recovery_check(body)
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def _recovery_check(body: str) -> str:
    digest = hashlib.sha256(b"refhub/v1 recovery code\0" + body.encode()).digest()
    return _B32[digest[0] >> 3] + _B32[digest[1] >> 3]


def canonical_recovery_code(code: str) -> str:
    """The 28 characters that unlock the recovery copy (upper case, no dashes or spaces).

    Raises BadInput for text that cannot be a recovery code, or has a typo.
    """
    if not isinstance(code, str):
        raise BadInput("a recovery code is required", code="invalid_recovery_code")
    text = re.sub(r"[\s-]", "", code).upper().translate(_LOOKALIKES)
    if len(text) != 28 or any(ch not in _B32 for ch in text) or _recovery_check(text[:26]) != text[26:]:
        raise BadInput("that is not the recovery code printed at enrolment (7 groups of 4 letters and digits);"
                       " check it for a typo", code="invalid_recovery_code")
    return text


# --- the web: contacts edited by an agency admin, suggestions on the referral form ---------------


def _own_contact(session: Session, agency_id: str, contact_id: int) -> Contact:
    contact = session.get(Contact, contact_id) if isinstance(contact_id, int) else None
    if contact is None or contact.agency_id != agency_id or not contact.active:
        raise NotFound("no such contact in your agency", code="unknown_contact")
    return contact


def set_duty_contact(session: Session, agency_id: str, contact_id: int, *, clock: Clock, actor: str) -> Contact:
    """This contact is texted first; the agency's other contacts lose the duty."""
    contact = _own_contact(session, agency_id, contact_id)
    for other in session.scalars(sa.select(Contact).where(Contact.agency_id == agency_id, Contact.duty.is_(True))):
        other.duty = False
    session.flush()
    contact.duty = True
    session.flush()
    audit(session, at=clock.now(), actor=actor, action="contact.duty",
          detail={"agency": agency_id, "contact_id": contact.id})
    return contact


def remove_contact(session: Session, agency_id: str, contact_id: int, *, clock: Clock, actor: str) -> Contact:
    """The contact is no longer texted (kept, inactive: referrals and the audit log name it)."""
    contact = _own_contact(session, agency_id, contact_id)
    if contact.duty:
        raise Conflict("this is the duty contact; give the duty to another contact first", code="duty_contact")
    contact.active = False
    session.flush()
    audit(session, at=clock.now(), actor=actor, action="contact.removed",
          detail={"agency": agency_id, "contact_id": contact.id})
    return contact


@dataclass(frozen=True)
class Suggestion:
    agency: Agency
    score: int
    needs_met: tuple[str, ...]
    same_province: bool
    beds_free: int | None
    beds_updated_at: Any


def suggest_recipients(session: Session, *, sender_id: str | None, needs: tuple[str, ...] | list[str],
                       province: str | None) -> list[Suggestion]:
    """Agencies that may receive a referral, the best first: most of the ticked needs offered, then in the
    province where the person was found, then free beds (a shelter with none is ranked last)."""
    out = []
    for agency in list_agencies(session):
        if agency.kind == "committee" or agency.id == sender_id:
            continue
        met = tuple(n for n in needs if n in (agency.services or []))
        same = province is not None and agency.province == province
        beds = agency.beds_available
        full = "shelter" in needs and "shelter" in (agency.services or []) and beds is not None and beds <= 0
        score = 10 * len(met) + (5 if same else 0) + (0 if full else 2 if beds else 1)
        out.append(Suggestion(agency=agency, score=score, needs_met=met, same_province=same, beds_free=beds,
                              beds_updated_at=agency.beds_updated_at))
    out.sort(key=lambda s: (-s.score, s.agency.id))
    return out
