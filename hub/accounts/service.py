"""Users, invitations, sessions, API tokens and the member-wrapped key rings of PROTOCOL.md section 1.

Custody in one paragraph: the hub keeps each member's copy of the agency key ring
wrapped under Argon2id of that member's password (holder ``user:<id>``). Signing in
unwraps it and re-wraps it under a random 32-byte session secret that exists only
in the browser's cookie (holder ``session:<first 32 hex of the session id hash>``;
PROTOCOL holders are at most 64 characters). An invitation carries its own random
secret, which wraps an ``invite:<invitation id>`` copy until the invitee chooses a
password. So the database alone, without a password, a cookie or an invitation
link, opens nothing.

Functions take a session and a clock and leave the commit to the caller, with one
exception: a failed sign-in commits its failure count before raising (see `login`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub import access, packets
from hub.access import SYSTEM, Principal
from hub.accounts import passwords, totp
from hub.accounts.models import (ApiToken, Invitation, KnownDevice, LoginThrottle, RecoveryCode, User, UserSession,
                                 WrappedKeyRing)
from hub.audit.service import record as audit
from hub.clock import Clock, rfc3339
from hub.directory import service as directory
from hub.directory.models import Agency, AgencyKey, Contact
from hub.directory.service import RECOVERY_HOLDER, canonical_recovery_code
from hub.errors import BadInput, Conflict, Invalid, NotFound, RateLimited, Unauthenticated
from hub.phones import normalize_phone
from hub.vocabulary import LANGUAGES, ROLES

__all__ = [
    "Principal", "create_token", "revoke_token", "authenticate_token", "principal_for_user",
    "add_user", "invite_again", "accept_invitation", "wrap_for_user", "login", "resume", "logout", "SignIn",
    "SecondStepPending", "second_step", "pending_stage", "totp_status", "confirm_totp", "disable_totp",
    "renew_recovery_codes", "reseal_totp_secrets",
    "reset_password_with_recovery", "recover_keyring", "purge_expired",
]

INVITATION_LIFETIME = dt.timedelta(days=7)
TOUCH_EVERY = dt.timedelta(minutes=1)  # last_used_at / last_seen_at are written at most this often
TOKEN_PREFIX = "rh_"

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- wrapped key ring rows --------------------------------------------------------------------


def _get_wrap(session: Session, agency_id: str, holder: str) -> WrappedKeyRing | None:
    return session.scalar(sa.select(WrappedKeyRing).where(WrappedKeyRing.agency_id == agency_id,
                                                          WrappedKeyRing.holder == holder))


def _put_wrap(session: Session, agency_id: str, holder: str, document: dict, now: dt.datetime,
              expires_at: dt.datetime | None = None) -> None:
    row = _get_wrap(session, agency_id, holder)
    if row is None:
        session.add(WrappedKeyRing(agency_id=agency_id, holder=holder, document=document, created_at=now,
                                   expires_at=expires_at))
    else:
        row.document, row.created_at, row.expires_at = document, now, expires_at
    session.flush()


def _drop_wraps(session: Session, holders: list[str]) -> None:
    if holders:
        session.execute(sa.delete(WrappedKeyRing).where(WrappedKeyRing.holder.in_(holders)))


def _user_holder(user_id: int) -> str:
    return f"user:{user_id}"


def _session_holder(id_hash: str) -> str:
    return f"session:{id_hash[:32]}"


def _check_ring(session: Session, ring: packets.KeyRing, agency_id: str) -> None:
    """The ring must be the agency's enrolled one (its signing key is in the directory)."""
    if ring.agency != agency_id:
        raise BadInput(f"the key ring given is agency {ring.agency}'s, not {agency_id}'s", code="wrong_keyring")
    kids = [k.kid for k in ring.keys]
    known = session.scalar(sa.select(sa.func.count()).select_from(AgencyKey)
                           .where(AgencyKey.agency_id == agency_id, AgencyKey.kid.in_(kids)))
    if not known:
        raise BadInput(f"the key ring given is not the one enrolled for {agency_id}", code="wrong_keyring")


# --- principals and API tokens --------------------------------------------------------------


def principal_for_user(session: Session, user: User) -> Principal:
    agency = session.get(Agency, user.agency_id) if user.agency_id else None
    return Principal(kind="user", agency_id=user.agency_id, role=user.role, user_id=user.id,
                     province=agency.province if agency else None, agency_kind=agency.kind if agency else None,
                     display=f"user:{user.id}")


def contact_principal(contact: Contact) -> Principal:
    """The principal an SMS contact acts as when it replies by SMS or taps a one-tap link."""
    agency = contact.agency
    return Principal(kind="contact", agency_id=contact.agency_id, role=contact.role, province=agency.province,
                     agency_kind=agency.kind, display=f"contact:{contact.id}")


def create_token(session: Session, agency_id: str, name: str, clock: Clock, *, actor: str = "hub") -> str:
    """A new API token for the agency's own system; returns it once (only its SHA-256 is stored)."""
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"no agency {agency_id!r} in the directory; run `hub agencies sync`", code="unknown_agency")
    name = (name or "").strip() or "agency system"
    if len(name) > 100:
        raise BadInput("the token's name must be at most 100 characters", code="invalid_field")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    token = ApiToken(agency_id=agency.id, name=name, token_hash=_sha256(raw), prefix=raw[:11], created_at=now)
    session.add(token)
    session.flush()
    audit(session, at=now, actor=actor, action="token.created", detail={"agency": agency.id, "token_id": token.id})
    return raw


def revoke_token(session: Session, token_id: int, clock: Clock, *, actor: str = "hub") -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no API token with id {token_id}", code="unknown_token")
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        audit(session, at=token.revoked_at, actor=actor, action="token.revoked",
              detail={"agency": token.agency_id, "token_id": token.id})
    session.flush()
    return token


# On the tables, not the mapped classes: a plain Core SELECT, without the ORM's loading machinery.
_TOKENS, _AGENCIES = ApiToken.__table__.c, Agency.__table__.c
_TOKEN_CHECK = (sa.select(_TOKENS.id, _TOKENS.revoked_at, _TOKENS.last_used_at, _AGENCIES.id, _AGENCIES.active,
                          _AGENCIES.province, _AGENCIES.kind)
                .join_from(ApiToken.__table__, Agency.__table__, _AGENCIES.id == _TOKENS.agency_id)
                .where(_TOKENS.token_hash == sa.bindparam("token_hash")))


def authenticate_token(session: Session, raw: str, clock: Clock) -> Principal:
    """The agency system behind a bearer token; Unauthenticated if unknown or revoked."""
    bad = Unauthenticated("this API token is not valid or was revoked; create one with `hub tokens create --agency ID`",
                          code="bad_token")
    if not isinstance(raw, str) or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        raise bad
    # One statement, read afresh on every request (never cached): a revocation holds at once.
    found = session.connection().execute(_TOKEN_CHECK, {"token_hash": _sha256(raw)}).one_or_none()
    if found is None:
        raise bad
    token_id, revoked_at, last_used_at, agency_id, active, province, kind = found
    if revoked_at is not None or not active:
        raise bad
    now = clock.now()
    if last_used_at is None or now - last_used_at >= TOUCH_EVERY:
        session.get(ApiToken, token_id).last_used_at = now  # at most once a minute: the row as an object
    return Principal(kind="token", agency_id=agency_id, role=SYSTEM, token_id=token_id, province=province,
                     agency_kind=kind, display=f"token:{token_id}")


# --- users and invitations --------------------------------------------------------------------


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:30]


def _free_username(session: Session, base: str) -> str:
    candidate, n = base, 1
    while session.scalar(sa.select(User.id).where(User.username == candidate)) is not None:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _new_invitation(session: Session, user: User, *, now: dt.datetime, keyring: packets.KeyRing | None,
                    lifetime: dt.timedelta) -> str:
    id_part = secrets.token_urlsafe(16)
    secret = secrets.token_bytes(32)
    invitation = Invitation(user_id=user.id, token_hash=_sha256(id_part), created_at=now, expires_at=now + lifetime)
    session.add(invitation)
    session.flush()
    if keyring is not None:
        document = packets.wrap_keyring(keyring, holder=f"invite:{invitation.id}", secret=secret)
        _put_wrap(session, user.agency_id, f"invite:{invitation.id}", document, now, invitation.expires_at)
    return f"{id_part}.{packets.b64u_encode(secret)}"


def add_user(session: Session, *, agency_id: str | None, role: str, name: str, username: str | None = None,
             phone: str | None = None, lang: str = "km", clock: Clock, keyring: packets.KeyRing | None = None,
             invitation_lifetime: dt.timedelta = INVITATION_LIFETIME, actor: str = "hub") -> tuple[User, str]:
    """Add a user and return them with a one-time invitation token (for ``/invite/<token>``).

    With ``keyring`` (the agency's unlocked key ring) the invitation also carries a copy
    of it, so the user's password will unlock it; without, the user signs in but cannot
    open packets until an agency admin invites them again with the key ring.
    """

    if role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}, not {role!r}", code="invalid_field")
    agency = None
    if agency_id is None:
        if role != "hub_admin":
            raise BadInput("every user but a hub_admin belongs to an agency; give --agency ID", code="missing_field")
    else:
        agency = session.get(Agency, agency_id)
        if agency is None:
            raise NotFound(f"no agency {agency_id!r} in the directory; run `hub agencies sync`", code="unknown_agency")
        if role == "coordinator" and agency.kind != "committee":
            raise BadInput("coordinators belong to a committee agency (pp-committee, ncct, ...)", code="invalid_field")
        if agency.kind == "committee" and role not in ("coordinator", "agency_admin"):
            raise BadInput("a committee's users are coordinators or its agency_admin", code="invalid_field")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise BadInput("the user's name must be text of 1 to 200 characters", code="invalid_field")
    if lang not in LANGUAGES:
        raise BadInput("lang must be km or en", code="invalid_field")
    if username is None:
        base = f"{agency_id}.{_slug(name) or role}" if agency_id else (_slug(name) or "hub-admin")
        username = _free_username(session, base[:60])
    else:
        username = username.strip().lower()
        if not _USERNAME.match(username):
            raise BadInput("a username is 3 to 64 lower-case letters, digits, dots, dashes or underscores",
                           code="invalid_field")
        if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
            raise Conflict(f"the username {username} is taken; choose another", code="username_taken")
    if keyring is not None:
        if agency is None:
            raise BadInput("a hub_admin without an agency holds no key ring", code="invalid_field")
        _check_ring(session, keyring, agency.id)
    now = clock.now()
    user = User(agency_id=agency_id, username=username, name=name.strip(), role=role,
                phone=normalize_phone(phone) if phone else None, lang=lang, active=True, failed_logins=0,
                created_at=now)
    session.add(user)
    session.flush()
    token = _new_invitation(session, user, now=now, keyring=keyring, lifetime=invitation_lifetime)
    audit(session, at=now, actor=actor, action="user.added",
          detail={"user_id": user.id, "agency": agency_id, "role": role, "keyring": keyring is not None})
    return user, token


def invite_again(session: Session, user_id: int, *, clock: Clock, keyring: packets.KeyRing | None = None,
                 lifetime: dt.timedelta = INVITATION_LIFETIME, actor: str = "hub") -> str:
    """A fresh invitation (e.g. a forgotten password, reset by an agency admin with their unlocked key ring)."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}", code="unknown_user")
    if keyring is not None:
        _check_ring(session, keyring, user.agency_id)
    now = clock.now()
    for old in session.scalars(sa.select(Invitation).where(Invitation.user_id == user.id,
                                                            Invitation.used_at.is_(None))):
        old.expires_at = min(old.expires_at, now)
        _drop_wraps(session, [f"invite:{old.id}"])
    token = _new_invitation(session, user, now=now, keyring=keyring, lifetime=lifetime)
    audit(session, at=now, actor=actor, action="user.invited", detail={"user_id": user.id})
    return token


def _split_token(token: str) -> tuple[str, bytes] | None:
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > 200:
        return None
    id_part, _, secret_part = token.partition(".")
    try:
        secret = packets.b64u_decode(secret_part)
    except packets.PacketError:
        return None
    if not id_part or len(secret) != 32:
        return None
    return id_part, secret


def wrap_for_user(session: Session, user: User, ring: packets.KeyRing, password: str, *, clock: Clock,
                  kdf_params: dict | None = None) -> None:
    """Store (or replace) the user's copy of the key ring, wrapped under Argon2id of their password."""
    document = packets.wrap_keyring(ring, holder=_user_holder(user.id), passphrase=password, kdf_params=kdf_params)
    _put_wrap(session, user.agency_id, _user_holder(user.id), document, clock.now())


def accept_invitation(session: Session, token: str, password: str, clock: Clock, *,
                      kdf_params: dict | None = None) -> User:
    """Set the invited user's password; their invitation's key ring copy becomes their own."""
    invalid = NotFound("this invitation link is not valid; ask your agency admin for a new one",
                       code="invalid_invitation")
    parts = _split_token(token)
    if parts is None:
        raise invalid
    id_part, secret = parts
    invitation = session.scalar(sa.select(Invitation).where(Invitation.token_hash == _sha256(id_part)))
    if invitation is None:
        raise invalid
    now = clock.now()
    if invitation.used_at is not None:
        raise Conflict("this invitation was already used; sign in, or ask your agency admin for a new one",
                       code="invitation_used")
    if invitation.expires_at <= now:
        raise Conflict("this invitation has expired; ask your agency admin for a new one", code="invitation_expired")
    passwords.check_strength(password)
    user = session.get(User, invitation.user_id)
    if user is None or not user.active:
        raise invalid
    ring = None
    wrap = _get_wrap(session, user.agency_id, f"invite:{invitation.id}") if user.agency_id else None
    if wrap is not None:
        try:
            ring = packets.unwrap_keyring(wrap.document, holder=f"invite:{invitation.id}", secret=secret)
        except packets.KeyRingError:
            raise invalid from None
    user.password_hash = passwords.hash_password(password, params=kdf_params)
    user.failed_logins, user.locked_until = 0, None
    if ring is not None:
        wrap_for_user(session, user, ring, password, clock=clock, kdf_params=kdf_params)
        session.delete(wrap)
    invitation.used_at = now
    audit(session, at=now, actor=f"user:{user.id}", action="invitation.accepted",
          detail={"user_id": user.id, "keyring": ring is not None})
    session.flush()
    return user


# --- signing in ---------------------------------------------------------------------------------
# No lock-out: a lock-out that anyone who knows a user name can trigger keeps the real user out.
# Instead, wrong passwords make the next attempt wait, separately
#   - per client address (``login_throttle`` row "address:<ip>"): stops the address that guesses;
#   - per account (``user.failed_logins`` / ``user.locked_until``): stops guessing spread over many
#     addresses, but only for devices that never signed in as this user.
# A browser that signed in as the user before carries a known-device cookie (its secret hashed in
# ``known_device``): it is held back by neither count, so the real user on their own phone signs
# in at once however hard the account is being tried. Its own wrong passwords count on the device
# alone, and after DEVICE_FAILURES it is forgotten (a stolen cookie buys a few guesses, no more).
# A waiting attempt is refused (429, Retry-After) without the password being checked.

THROTTLE_FREE = 5                          # wrong passwords before any wait
THROTTLE_FIRST = dt.timedelta(seconds=30)  # the first wait; each further failure doubles it ...
THROTTLE_MAX = dt.timedelta(minutes=15)    # ... up to this
THROTTLE_FORGET = dt.timedelta(hours=24)   # a count starts again after this long without a failure
DEVICE_FAILURES = 5
DEVICE_LIFETIME = dt.timedelta(days=180)   # a device unseen this long is no longer known
CODE_FAILURES = 5                          # wrong TOTP codes before the half-open session ends
SECOND_STEP_FOR = dt.timedelta(minutes=10)  # the password's session waits this long for its code
STAGES = ("done", "totp", "enrol")

LOGIN_FAILED = "the username or password is not right; check them and try again"


class SecondStepPending(Unauthenticated):
    """The session's password was right but its second step (TOTP code, or TOTP enrolment) is not done."""

    def __init__(self, stage: str):
        super().__init__("sign-in is not finished: " + ("enter the code from your authenticator app"
                                                        if stage == "totp" else "set up TOTP first"),
                         code="second_step_required")
        self.stage = stage


@dataclass
class SignIn:
    """What a sign-in step gives the face: the session cookie, who, the key ring, the stage reached,
    and a known-device cookie to set (None: keep the one the browser has)."""

    cookie: str
    principal: Principal
    ring: packets.KeyRing | None
    stage: str = "done"
    device: str | None = None

    def __iter__(self):  # ``cookie, principal, ring = login(...)``
        return iter((self.cookie, self.principal, self.ring))


def _delay(failures: int) -> dt.timedelta | None:
    if failures < THROTTLE_FREE:
        return None
    return min(THROTTLE_FIRST * 2 ** min(failures - THROTTLE_FREE, 16), THROTTLE_MAX)


def _seconds(until: dt.datetime, now: dt.datetime) -> int:
    return max(1, int((until - now).total_seconds() + 0.999))


def _address_row(session: Session, address: str | None) -> LoginThrottle | None:
    if not address:
        return None
    return session.get(LoginThrottle, f"address:{address[:70]}")


def _throttled(what: str, until: dt.datetime, now: dt.datetime) -> RateLimited:
    wait = _seconds(until, now)
    return RateLimited(f"too many wrong sign-ins {what}; wait {wait} seconds and try again, from a device "
                       "you signed in on before if you have one", code="login_throttled", retry_after=wait)


def _check_throttles(session: Session, user: User | None, address: str | None, now: dt.datetime) -> None:
    row = _address_row(session, address)
    if row is not None and row.not_before is not None and row.not_before > now:
        raise _throttled("from this address", row.not_before, now)
    if user is not None and user.locked_until is not None and user.locked_until > now:
        raise _throttled("for this account", user.locked_until, now)


def _count_failure(session: Session, user: User | None, device: KnownDevice | None, address: str | None,
                   now: dt.datetime) -> Unauthenticated:
    if device is not None:
        device.failures += 1
        if device.failures >= DEVICE_FAILURES:
            session.delete(device)  # a stolen device cookie buys a few guesses, no more
    else:
        if address:
            row = _address_row(session, address)
            if row is None:
                row = LoginThrottle(key=f"address:{address[:70]}", failures=0, last_failure_at=now)
                session.add(row)
            elif now - row.last_failure_at > THROTTLE_FORGET:
                row.failures = 0
            row.failures += 1
            row.last_failure_at = now
            delay = _delay(row.failures)
            row.not_before = now + delay if delay else None
        if user is not None:
            user.failed_logins = (user.failed_logins or 0) + 1
            delay = _delay(user.failed_logins)
            user.locked_until = now + delay if delay else None
    audit(session, at=now, actor="hub", action="login.failed",
          detail={"user_id": user.id, "known_device": device is not None} if user is not None else {})
    session.flush()
    return Unauthenticated(LOGIN_FAILED, code="login_failed")


def _known_device(session: Session, device: str | None, user: User | None, now: dt.datetime) -> KnownDevice | None:
    if user is None or not isinstance(device, str) or not 20 <= len(device) <= 100:
        return None
    row = session.get(KnownDevice, (_sha256(device), user.id))
    if row is None or now - row.last_used_at > DEVICE_LIFETIME:
        return None
    return row


def _remember_device(session: Session, user: User, device: str | None, now: dt.datetime) -> str | None:
    """Mark this browser as one the user signed in on; a new cookie value if it needs one, else None."""
    value = device if isinstance(device, str) and 20 <= len(device) <= 100 else None
    issued = None
    if value is None:
        value = issued = secrets.token_urlsafe(32)
    row = session.get(KnownDevice, (_sha256(value), user.id))
    if row is None:
        session.add(KnownDevice(token_hash=_sha256(value), user_id=user.id, created_at=now, last_used_at=now,
                                failures=0))
    else:
        row.last_used_at, row.failures = now, 0
    session.flush()
    return issued


def login(session: Session, username: str, password: str, *, clock: Clock, lifetime: dt.timedelta,
          totp_roles: Collection[str], idle: dt.timedelta | None = None, address: str | None = None,
          device: str | None = None) -> SignIn:
    """Check the password and open a session (cookie, principal, key ring or None: a :class:`SignIn`).

    An unknown user and a wrong password give the same error; a wrong password is counted
    (see the throttle above) before Unauthenticated is raised, so the face commits the unit
    of work on that error too. A waiting attempt raises RateLimited. For a role in
    ``totp_roles`` the session opens at stage "totp" (or "enrol" without TOTP yet), which
    no page or endpoint accepts until :func:`second_step` or :func:`confirm_totp` completes it.
    ``device`` is the browser's known-device cookie, ``address`` the client's address.
    """
    now = clock.now()
    user = None
    if isinstance(username, str) and 0 < len(username) <= 64:
        user = session.scalar(sa.select(User).where(User.username == username.strip().lower()))
    known = _known_device(session, device, user, now)
    if known is None:
        _check_throttles(session, user, address, now)
    if user is None or not user.active or not user.password_hash:
        passwords.dummy_verify(password)
        raise _count_failure(session, user if user is not None and user.active else None, None, address, now)
    if not isinstance(password, str) or not passwords.verify_password(password, user.password_hash):
        raise _count_failure(session, user, known, address, now)
    agency = session.get(Agency, user.agency_id) if user.agency_id else None
    if agency is not None and not agency.active:
        raise _count_failure(session, None, None, address, now)
    # TOTP once enrolled, whatever the role; enrolment first for the roles that must have it.
    stage = "totp" if user.totp_secret else ("enrol" if user.role in totp_roles else "done")
    if stage != "totp":  # a right password alone does not forgive wrong TOTP codes (second_step)
        user.failed_logins, user.locked_until = 0, None

    ring = None
    own = _get_wrap(session, user.agency_id, _user_holder(user.id)) if user.agency_id else None
    if own is not None:
        try:
            ring = packets.unwrap_keyring(own.document, holder=_user_holder(user.id), passphrase=password)
        except packets.KeyRingError:
            ring = None  # a stale copy (password changed elsewhere): signed in, but packets stay closed
    session_id = secrets.token_urlsafe(32)
    session_secret = secrets.token_bytes(32)
    id_hash = _sha256(session_id)
    expires = now + lifetime
    session.add(UserSession(id_hash=id_hash, user_id=user.id, created_at=now, last_seen_at=now, expires_at=expires,
                            stage=stage, idle_seconds=int(idle.total_seconds()) if idle else None,
                            code_failures=0))
    if ring is not None:
        document = packets.wrap_keyring(ring, holder=_session_holder(id_hash), secret=session_secret)
        _put_wrap(session, user.agency_id, _session_holder(id_hash), document, now, expires)
    issued = _remember_device(session, user, device, now) if stage == "done" else None
    audit(session, at=now, actor=f"user:{user.id}", action="login" if stage == "done" else "login.password",
          detail={"keyring": ring is not None, **({"stage": stage} if stage != "done" else {})})
    session.flush()
    return SignIn(f"{session_id}.{packets.b64u_encode(session_secret)}", principal_for_user(session, user), ring,
                  stage, issued)


def _session_row(session: Session, cookie_value: str, now: dt.datetime) -> tuple[UserSession, User, bytes]:
    """The live session behind a cookie, at whatever stage; Unauthenticated if it has ended."""
    ended = Unauthenticated("your session has ended; sign in again", code="session_expired")
    parts = _split_token(cookie_value)
    if parts is None:
        raise ended
    session_id, secret = parts
    row = session.get(UserSession, _sha256(session_id))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise ended
    if row.idle_seconds and now - row.last_seen_at > dt.timedelta(seconds=row.idle_seconds):
        raise ended  # idle too long: [security] session_idle
    if row.stage != "done" and now - row.created_at > SECOND_STEP_FOR:
        raise ended
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise ended
    return row, user, secret


def resume(session: Session, cookie_value: str, *, clock: Clock) -> tuple[Principal, packets.KeyRing | None]:
    """The signed-in user behind a session cookie, and the key ring its secret unwraps.

    Only a finished sign-in: a session waiting for its TOTP code (or enrolment) raises
    :class:`SecondStepPending`, so the half-signed-in state reaches no page or endpoint.
    """
    now = clock.now()
    row, user, secret = _session_row(session, cookie_value, now)
    if row.stage != "done":
        raise SecondStepPending(row.stage)
    id_hash = row.id_hash
    ring = None
    wrap = _get_wrap(session, user.agency_id, _session_holder(id_hash)) if user.agency_id else None
    if wrap is not None:
        try:
            ring = packets.unwrap_keyring(wrap.document, holder=_session_holder(id_hash), secret=secret)
        except packets.KeyRingError:
            raise Unauthenticated("your session has ended; sign in again", code="session_expired") from None
    principal = principal_for_user(session, user)  # read before the touch: no flush in a read-only unit
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return principal, ring


def pending_stage(session: Session, cookie_value: str, *, clock: Clock) -> tuple[str, str]:
    """(stage, username) of the browser's session, whatever its stage; Unauthenticated if none."""
    row, user, _secret = _session_row(session, cookie_value, clock.now())
    return row.stage, user.username


# --- TOTP: the second step, enrolment, recovery codes ----------------------------------------------


def _check_code(session: Session, user: User, code: str, *, now: dt.datetime, secret_key: totp.Keys,
                recovery: bool = True) -> str | None:
    """"totp" or "recovery" if ``code`` is a right TOTP code (now, not used before) or an unused
    recovery code of this user (which is then used up); None otherwise."""
    if not isinstance(code, str) or len(code) > 64 or not user.totp_secret:
        return None
    if totp.looks_like_totp(code):
        try:
            secret = totp.unseal(secret_key, user.id, user.totp_secret)
        except totp.SealError:
            return None
        step = totp.matching_step(secret, code, now, user.totp_last_counter)
        if step is None:
            return None
        user.totp_last_counter = step
        return "totp"
    if not recovery:
        return None
    row = session.scalar(sa.select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                       RecoveryCode.code_hash == totp.recovery_hash(user.id, code),
                                                       RecoveryCode.used_at.is_(None)))
    if row is None:
        return None
    row.used_at = now
    return "recovery"


WRONG_CODE = "this code is not right, or was used already; enter the code your authenticator app shows now"


def second_step(session: Session, cookie_value: str, code: str, *, clock: Clock, secret_key: totp.Keys,
                device: str | None = None) -> SignIn:
    """Finish a sign-in at stage "totp" with a TOTP code or a recovery code.

    A wrong code is counted on the session (the face commits on that error too); after
    CODE_FAILURES the session is ended and the password must be given again.
    """
    now = clock.now()
    row, user, secret = _session_row(session, cookie_value, now)
    if row.stage != "totp":
        raise Conflict("this session is not waiting for a code", code="no_second_step")
    via = _check_code(session, user, code, now=now, secret_key=secret_key)
    if via is None:
        # Counted on the account too: guessing codes with a known password slows down like guessing
        # passwords (a known device still passes), and the session's own count ends it.
        user.failed_logins = (user.failed_logins or 0) + 1
        delay = _delay(user.failed_logins)
        user.locked_until = now + delay if delay else None
        row.code_failures += 1
        ended = row.code_failures >= CODE_FAILURES
        if ended:
            _drop_wraps(session, [_session_holder(row.id_hash)])
            session.delete(row)
        audit(session, at=now, actor="hub", action="login.failed", detail={"user_id": user.id, "step": "totp"})
        session.flush()
        if ended:
            raise Unauthenticated("too many wrong codes; sign in again with your password", code="session_expired")
        raise Unauthenticated(WRONG_CODE, code="wrong_code")
    return _finish(session, row, user, secret, device, now, detail={"via": via})


def _finish(session: Session, row: UserSession, user: User, secret: bytes, device: str | None, now: dt.datetime,
            detail: dict) -> SignIn:
    row.stage, row.last_seen_at = "done", now
    user.failed_logins, user.locked_until = 0, None
    issued = _remember_device(session, user, device, now)
    ring = None
    wrap = _get_wrap(session, user.agency_id, _session_holder(row.id_hash)) if user.agency_id else None
    if wrap is not None:
        ring = packets.unwrap_keyring(wrap.document, holder=_session_holder(row.id_hash), secret=secret)
    audit(session, at=now, actor=f"user:{user.id}", action="login", detail={"keyring": ring is not None, **detail})
    session.flush()
    return SignIn("", principal_for_user(session, user), ring, "done", issued)


@dataclass
class Enrolment:
    username: str
    enabled: bool       # TOTP is on for this member
    secret: str | None  # the secret to enrol (shown as text beside its QR code); None while enabled
    uri: str | None
    recovery_left: int


def totp_status(session: Session, cookie_value: str, *, clock: Clock, secret_key: totp.Keys) -> Enrolment:
    """The member's TOTP: on, or the secret to enrol now (made once and kept, sealed, until confirmed).

    For a signed-in session or one at stage "enrol".
    """
    now = clock.now()
    row, user, _secret = _session_row(session, cookie_value, now)
    if row.stage == "totp":
        raise SecondStepPending("totp")
    left = session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)
                          .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
    if user.totp_secret:
        return Enrolment(user.username, True, None, None, left)
    plain = None
    if user.totp_pending:
        try:
            plain = totp.unseal(secret_key, user.id, user.totp_pending)
        except totp.SealError:
            plain = None
    if plain is None:
        plain = totp.new_secret()
        user.totp_pending = totp.seal(secret_key, user.id, plain)
        session.flush()
    return Enrolment(user.username, False, plain, totp.uri(plain, user.username), left)


def confirm_totp(session: Session, cookie_value: str, code: str, *, clock: Clock, secret_key: totp.Keys,
                 device: str | None = None) -> tuple[list[str], SignIn | None]:
    """Turn TOTP on with a code from the secret being enrolled; returns the ten new recovery codes
    (shown once; only their hashes are kept) and, for a session at stage "enrol", the finished sign-in."""
    now = clock.now()
    row, user, secret = _session_row(session, cookie_value, now)
    if row.stage == "totp":
        raise SecondStepPending("totp")
    if user.totp_secret or not user.totp_pending:
        raise Conflict("TOTP is already on, or no enrolment was started; open the settings page again",
                       code="totp_state")
    try:
        plain = totp.unseal(secret_key, user.id, user.totp_pending)
    except totp.SealError:
        raise Conflict("the enrolment secret cannot be read; open the settings page again", code="totp_state") from None
    step = totp.matching_step(plain, code if isinstance(code, str) else "", now, None)
    if step is None:
        raise Invalid(WRONG_CODE, code="wrong_code")
    user.totp_secret, user.totp_pending, user.totp_last_counter = user.totp_pending, None, step
    codes = _add_recovery_codes(session, user, now)
    audit(session, at=now, actor=f"user:{user.id}", action="totp.enrolled", detail={"user_id": user.id})
    finished = _finish(session, row, user, secret, device, now, detail={"via": "enrolment"}) \
        if row.stage == "enrol" else None
    session.flush()
    return codes, finished


def _add_recovery_codes(session: Session, user: User, now: dt.datetime) -> list[str]:
    """Ten new recovery codes for ``user`` in place of any old ones (only their hashes are kept)."""
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = totp.new_recovery_codes()
    for c in codes:
        session.add(RecoveryCode(user_id=user.id, code_hash=totp.recovery_hash(user.id, c), created_at=now))
    return codes


def _totp_change(session: Session, cookie_value: str, code: str, *, now: dt.datetime, secret_key: totp.Keys,
                 recovery: bool):
    """The fully signed-in session and its user, for a change to their TOTP that a current code
    (or, if ``recovery``, a recovery code) allows; refused otherwise, nothing changed."""
    row, user, _secret = _session_row(session, cookie_value, now)
    if row.stage != "done":
        raise SecondStepPending(row.stage)
    if not user.totp_secret:
        raise Conflict("TOTP is not on for you", code="totp_state")
    if _check_code(session, user, code, now=now, secret_key=secret_key, recovery=recovery) is None:
        raise Invalid(WRONG_CODE, code="wrong_code")
    return row, user


def renew_recovery_codes(session: Session, cookie_value: str, code: str, *, clock: Clock,
                         secret_key: totp.Keys) -> list[str]:
    """Ten new recovery codes, with a current TOTP code (not a recovery code: whoever renews them
    holds the authenticator); every old code, used or not, stops working. Returns the new codes,
    to be shown once."""
    now = clock.now()
    _row, user = _totp_change(session, cookie_value, code, now=now, secret_key=secret_key, recovery=False)
    codes = _add_recovery_codes(session, user, now)
    audit(session, at=now, actor=f"user:{user.id}", action="totp.recovery_codes_renewed", detail={"user_id": user.id})
    session.flush()
    return codes


def disable_totp(session: Session, cookie_value: str, code: str, *, clock: Clock, secret_key: totp.Keys,
                 totp_roles: Collection[str]) -> str:
    """Turn TOTP off with a current code (or a recovery code), to enrol again or for good.

    For a role in ``totp_roles`` this session goes back to stage "enrol": it reaches nothing
    but enrolment until a new secret is confirmed. Returns the session's stage now.
    """
    now = clock.now()
    row, user = _totp_change(session, cookie_value, code, now=now, secret_key=secret_key, recovery=True)
    user.totp_secret, user.totp_pending = None, None
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    if user.role in totp_roles:
        row.stage, row.created_at = "enrol", now
    audit(session, at=now, actor=f"user:{user.id}", action="totp.disabled", detail={"user_id": user.id})
    session.flush()
    return row.stage


@dataclass
class Reseal:
    resealed: int     # secrets that opened only with the previous key, now sealed under the current one
    current: int      # secrets sealed under the current key already
    unreadable: list[int]  # users whose secret opens with neither key (they sign in with a recovery code)


def reseal_totp_secrets(session: Session, keys: Sequence[str], *, clock: Clock) -> Reseal:
    """Seal every TOTP secret (and secret being enrolled) under ``keys[0]``, HUB_SECRET_KEY, after a
    rotation (``keys[1]``: HUB_SECRET_KEY_PREVIOUS). Idempotent; one audit entry records the counts."""
    report = Reseal(0, 0, [])
    users = session.scalars(sa.select(User).where(sa.or_(User.totp_secret.is_not(None), User.totp_pending.is_not(None)))
                            .order_by(User.id).with_for_update())
    for user in users:
        for column in ("totp_secret", "totp_pending"):
            value = getattr(user, column)
            if not value:
                continue
            try:
                if totp.sealed_under_current(keys, user.id, value):
                    report.current += 1
                    continue
                setattr(user, column, totp.seal(keys, user.id, totp.unseal(keys, user.id, value)))
                report.resealed += 1
            except totp.SealError:
                if user.id not in report.unreadable:
                    report.unreadable.append(user.id)
    audit(session, at=clock.now(), actor="cli", action="totp.resealed",
          detail={"resealed": report.resealed, "current": report.current, "unreadable": len(report.unreadable)})
    session.flush()
    return report


def logout(session: Session, cookie_value: str, *, clock: Clock | None = None) -> None:
    """End the session: its row and its key ring copy are deleted."""
    parts = _split_token(cookie_value)
    if parts is None:
        return
    id_hash = _sha256(parts[0])
    row = session.get(UserSession, id_hash)
    if row is None:
        return
    _drop_wraps(session, [_session_holder(id_hash)])
    if clock is not None:
        audit(session, at=clock.now(), actor=f"user:{row.user_id}", action="logout", detail={})
    session.delete(row)
    session.flush()


def _end_sessions(session: Session, user_id: int) -> None:
    rows = list(session.scalars(sa.select(UserSession).where(UserSession.user_id == user_id)))
    _drop_wraps(session, [_session_holder(r.id_hash) for r in rows])
    for r in rows:
        session.delete(r)
    session.flush()


# --- recovery ------------------------------------------------------------------------------------


def recover_keyring(session: Session, agency_id: str, recovery_code: str) -> packets.KeyRing:
    """Open the agency's recovery copy with the code printed at enrolment."""

    code = canonical_recovery_code(recovery_code)
    wrap = _get_wrap(session, agency_id, RECOVERY_HOLDER)
    if wrap is None:
        raise NotFound(f"agency {agency_id} has no recovery copy; is it enrolled (`hub agencies enroll {agency_id}`)?",
                       code="not_enrolled")
    try:
        return packets.unwrap_keyring(wrap.document, holder=RECOVERY_HOLDER, passphrase=code, agency=agency_id)
    except packets.WrongPassphrase:
        raise Invalid(f"this recovery code does not open {agency_id}'s key ring; use the code printed when "
                      f"{agency_id} was enrolled", code="wrong_recovery_code") from None


def reset_password_with_recovery(session: Session, user_id: int, recovery_code: str, new_password: str,
                                 clock: Clock, *, kdf_params: dict | None = None, actor: str = "hub") -> User:
    """Set a new password from the agency's recovery code: a new key ring copy, every session ended."""
    user = session.get(User, user_id)
    if user is None or user.agency_id is None:
        raise NotFound(f"no agency user with id {user_id}", code="unknown_user")
    passwords.check_strength(new_password)
    ring = recover_keyring(session, user.agency_id, recovery_code)
    now = clock.now()
    user.password_hash = passwords.hash_password(new_password, params=kdf_params)
    user.failed_logins, user.locked_until = 0, None
    wrap_for_user(session, user, ring, new_password, clock=clock, kdf_params=kdf_params)
    _end_sessions(session, user.id)
    audit(session, at=now, actor=actor, action="password.reset", detail={"user_id": user.id, "via": "recovery"})
    session.flush()
    return user


def purge_expired(session: Session, clock: Clock) -> int:
    """Delete ended sessions and expired invitation copies (and their key ring wraps)."""
    now = clock.now()
    rows = list(session.scalars(sa.select(UserSession).where(
        sa.or_(UserSession.expires_at <= now, UserSession.revoked_at.is_not(None)))))
    _drop_wraps(session, [_session_holder(r.id_hash) for r in rows])
    for r in rows:
        session.delete(r)
    result = session.execute(sa.delete(WrappedKeyRing).where(WrappedKeyRing.expires_at.is_not(None),
                                                            WrappedKeyRing.expires_at <= now))
    session.flush()
    return len(rows) + (result.rowcount or 0)


def enroll_agency(session: Session, agency_id: str, *, clock: Clock, keys_dir: Path,
                  kdf_params: dict | None = None, actor: str = "hub") -> tuple[packets.KeyRing, str]:
    """Make the agency's key pairs; return the key ring (in memory only) and its recovery code.

    Stores the public keys, writes keys/<agency>.pub.json and keeps one wrapped copy of
    the key ring, holder ``recovery``, that the recovery code opens. The code is a random
    128-bit secret; the copy is wrapped with ``"kdf": {"alg": "argon2id"}`` using the
    code's canonical text (:func:`canonical_recovery_code`) as the passphrase. A raw KEK
    derived from the code would need a derivation that PROTOCOL.md does not define;
    Argon2id keeps the recovery copy openable by anyone holding PROTOCOL.md and the code.
    ``kdf_params`` overrides the PROTOCOL Argon2id parameters (tests use small ones).

    Refuses (Conflict) if the agency already has keys: rotation is a separate operation.
    """
    agency = directory.get_agency(session, agency_id)
    if directory.is_enrolled(session, agency.id):
        raise Conflict(f"agency {agency.id} is already enrolled (keys/{agency.id}.pub.json); "
                       "its keys are not replaced by enrolling again", code="already_enrolled")
    now = clock.now()
    ring, bundle = packets.generate_keyring(agency.id, created_at=rfc3339(now))
    directory.store_public_bundle(session, bundle)
    code = directory.new_recovery_code()
    document = packets.wrap_keyring(ring, holder=RECOVERY_HOLDER, passphrase=canonical_recovery_code(code),
                                    kdf_params=kdf_params)
    old = session.scalar(sa.select(WrappedKeyRing).where(WrappedKeyRing.agency_id == agency.id,
                                                         WrappedKeyRing.holder == RECOVERY_HOLDER))
    if old is not None:
        session.delete(old)
        session.flush()
    session.add(WrappedKeyRing(agency_id=agency.id, holder=RECOVERY_HOLDER, document=document, created_at=now))
    audit(session, at=now, actor=actor, action="agency.enrolled",
          detail={"agency": agency.id, "kids": [k.kid for k in bundle.keys]})
    session.flush()
    directory.write_bundle_file(bundle, keys_dir)
    return ring, code


# --- the web's member settings and agency administration ---------------------------------------
# Each function checks who may act (hub.accounts.access), changes what it must, writes one audit
# entry, and leaves the commit to the caller.

MEMBER_ROLES = {"committee": ("coordinator", "agency_admin")}
DEFAULT_MEMBER_ROLES = ("officer", "caseworker", "agency_admin")


def get_user(session: Session, user_id: int | None) -> User | None:
    return session.get(User, user_id) if user_id is not None else None


def set_language(session: Session, principal: Principal, lang: str, *, clock: Clock) -> User:
    """The signed-in member's language for pages (and their SMS, where they are a contact)."""
    user = get_user(session, principal.user_id)
    if user is None:
        raise NotFound("no such user", code="unknown_user")
    if lang not in ("km", "en"):
        raise BadInput("lang must be km or en", code="invalid_field")
    if user.lang != lang:
        user.lang = lang
        audit(session, at=clock.now(), actor=principal.display, action="user.language",
              detail={"user_id": user.id, "lang": lang})
        session.flush()
    return user


def change_password(session: Session, principal: Principal, ring: packets.KeyRing | None, current_password: str,
                    new_password: str, *, clock: Clock, kdf_params: dict | None = None) -> User:
    """A new password; the member's key ring copy is wrapped again under it (from the unlocked session)."""
    user = get_user(session, principal.user_id)
    if user is None or not user.password_hash:
        raise NotFound("no such user", code="unknown_user")
    if not isinstance(current_password, str) or not passwords.verify_password(current_password, user.password_hash):
        raise Unauthenticated("the current password is not right", code="wrong_password")
    passwords.check_strength(new_password)
    user.password_hash = passwords.hash_password(new_password, params=kdf_params)
    if ring is not None:
        wrap_for_user(session, user, ring, new_password, clock=clock, kdf_params=kdf_params)
    audit(session, at=clock.now(), actor=principal.display, action="password.changed",
          detail={"user_id": user.id, "keyring": ring is not None})
    session.flush()
    return user


def _admin_of(principal: Principal, agency_id: str | None) -> None:
    if agency_id is None:
        raise NotFound("no such user", code="unknown_user")
    access.require(principal, "agency.admin", agency_id=agency_id)


def _member_of_admin(session: Session, principal: Principal, user_id: int) -> User:
    user = get_user(session, user_id)
    if user is None or user.agency_id is None or (principal.role != "hub_admin" and user.agency_id != principal.agency_id):
        raise NotFound("no such user in your agency", code="unknown_user")
    _admin_of(principal, user.agency_id)
    return user


def list_members(session: Session, principal: Principal) -> list[User]:
    _admin_of(principal, principal.agency_id)
    return list(session.scalars(sa.select(User).where(User.agency_id == principal.agency_id)
                                .order_by(User.active.desc(), User.name, User.id)))


def member_roles(agency_kind: str | None) -> tuple[str, ...]:
    return MEMBER_ROLES.get(agency_kind or "", DEFAULT_MEMBER_ROLES)


def invite_member(session: Session, principal: Principal, ring: packets.KeyRing | None, *, name: str, role: str,
                  lang: str, username: str | None = None, phone: str | None = None,
                  clock: Clock) -> tuple[User, str]:
    """An agency admin invites a member of their own agency; the invitation carries the admin's key ring."""
    _admin_of(principal, principal.agency_id)
    if role not in member_roles(principal.agency_kind):
        raise BadInput(f"role must be one of {', '.join(member_roles(principal.agency_kind))}", code="invalid_field")
    return add_user(session, agency_id=principal.agency_id, role=role, name=name, username=username or None,
                    phone=phone or None, lang=lang, clock=clock, keyring=ring, actor=principal.display)


def reinvite_member(session: Session, principal: Principal, ring: packets.KeyRing | None, user_id: int, *,
                    clock: Clock) -> tuple[User, str]:
    user = _member_of_admin(session, principal, user_id)
    if not user.active:
        raise Conflict("this user is deactivated", code="user_inactive")
    return user, invite_again(session, user.id, clock=clock, keyring=ring, actor=principal.display)


def deactivate_member(session: Session, principal: Principal, user_id: int, *, clock: Clock) -> User:
    """The member can no longer sign in; their sessions and their key ring copy are removed."""
    user = _member_of_admin(session, principal, user_id)
    if user.id == principal.user_id:
        raise Conflict("you cannot deactivate yourself; ask another agency admin", code="self_deactivation")
    if user.active:
        user.active = False
        _end_sessions(session, user.id)
        _drop_wraps(session, [_user_holder(user.id)])
        audit(session, at=clock.now(), actor=principal.display, action="user.deactivated",
              detail={"user_id": user.id})
        session.flush()
    return user


def recover_member(session: Session, principal: Principal, user_id: int, recovery_code: str, new_password: str, *,
                   clock: Clock, kdf_params: dict | None = None) -> User:
    """An agency admin restores a member's access with the agency's recovery code."""
    user = _member_of_admin(session, principal, user_id)
    return reset_password_with_recovery(session, user.id, recovery_code, new_password, clock, kdf_params=kdf_params,
                                        actor=principal.display)


def admin_contacts(session: Session, principal: Principal) -> list:
    _admin_of(principal, principal.agency_id)
    return directory.contacts_for(session, principal.agency_id)


def admin_save_contact(session: Session, principal: Principal, *, name: str, phone: str, lang: str, role: str,
                       duty: bool, clock: Clock):
    _admin_of(principal, principal.agency_id)
    return directory.add_contact(session, principal.agency_id, name, phone, duty=duty, lang=lang, role=role, clock=clock,
                       actor=principal.display)


def admin_contact_change(session: Session, principal: Principal, contact_id: int, change: str, *, clock: Clock):
    """``change`` is "duty" (this contact is texted first) or "remove" (no longer texted)."""
    _admin_of(principal, principal.agency_id)
    if change == "duty":
        return directory.set_duty_contact(session, principal.agency_id, contact_id, clock=clock,
                                                  actor=principal.display)
    if change == "remove":
        return directory.remove_contact(session, principal.agency_id, contact_id, clock=clock, actor=principal.display)
    raise BadInput("change must be duty or remove", code="invalid_field")


def invitation_lang(session: Session, token: str) -> str | None:
    """The language of the user an invitation link is for (its page is shown in it); None if not valid."""
    parts = _split_token(token)
    if parts is None:
        return None
    invitation = session.scalar(sa.select(Invitation).where(Invitation.token_hash == _sha256(parts[0])))
    user = session.get(User, invitation.user_id) if invitation is not None else None
    return user.lang if user is not None else None
