"""Accounts: invitations, passwords, sign-in and lock-out, sessions, API tokens, and key ring custody.

The custody promise (PROTOCOL.md section 1): the hub's database alone, without a
password, a session cookie or an invitation link, opens no key ring.
"""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from hub import packets
from hub.accounts import service as accounts
from hub.accounts.models import ApiToken, Invitation, KnownDevice, User, UserSession, WrappedKeyRing
from hub.db import session_scope
from hub.directory import service as directory
from hub.errors import BadInput, Conflict, NotFound, RateLimited, Unauthenticated
from tests.factories import FAST_KDF

PASSWORD = "correct horse battery staple"
LIFETIME = dt.timedelta(hours=12)


@pytest.fixture
def enrolled(db, settings, clock):
    """The directory loaded; pp-shelter-a enrolled. Returns (sessions, ring, recovery code)."""
    with session_scope(db) as s:
        directory.sync_agencies(s, settings.agencies_dir, clock)
        ring, code = accounts.enroll_agency(s, "pp-shelter-a", clock=clock, keys_dir=settings.keys_dir,
                                             kdf_params=FAST_KDF)
    return db, ring, code


def _invite(sessions, clock, ring=None, *, role="caseworker", agency="pp-shelter-a", username=None):
    with session_scope(sessions) as s:
        user, token = accounts.add_user(s, agency_id=agency, role=role, name="Test Caseworker", username=username,
                                        clock=clock, keyring=ring)
        return user.id, token


def _member(sessions, clock, ring, username="shelter.worker"):
    """A user who accepted their invitation with PASSWORD."""
    user_id, token = _invite(sessions, clock, ring, username=username)
    with session_scope(sessions) as s:
        accounts.accept_invitation(s, token, PASSWORD, clock, kdf_params=FAST_KDF)
    return user_id


def _login(sessions, clock, username="shelter.worker", password=PASSWORD, *, address="198.51.100.20", device=None):
    """As the sign-in page does: the unit of work is committed whether the attempt fails or not."""
    with sessions() as s:
        try:
            return accounts.login(s, username, password, clock=clock, lifetime=LIFETIME, totp_roles=(),
                                  address=address, device=device)
        finally:
            s.commit()


def _login_error(sessions, clock, username, password, **where) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as err:
        _login(sessions, clock, username, password, **where)
    return err.value


# --- invitation, password, sign-in -----------------------------------------------------------------


def test_invitation_then_password_then_login_unlocks_the_key_ring(enrolled, clock):
    sessions, ring, _ = enrolled
    user_id = _member(sessions, clock, ring)
    cookie, principal, opened = _login(sessions, clock)
    assert opened is not None and opened.to_json() == ring.to_json()
    assert (principal.kind, principal.agency_id, principal.role, principal.user_id) == \
        ("user", "pp-shelter-a", "caseworker", user_id)
    assert principal.province == "KH-12" and principal.agency_kind == "shelter" and principal.display == f"user:{user_id}"
    with session_scope(sessions) as s:
        holders = set(s.scalars(sa.select(WrappedKeyRing.holder).where(WrappedKeyRing.agency_id == "pp-shelter-a")))
        used = s.scalars(sa.select(Invitation.used_at)).one()
    assert f"user:{user_id}" in holders and "recovery" in holders
    assert not any(h.startswith("invite:") for h in holders), "the invitation copy is gone once used"
    assert used == clock.now()


def test_the_session_copy_opens_with_the_cookie_secret_only(enrolled, clock):
    sessions, ring, _ = enrolled
    _member(sessions, clock, ring)
    cookie, _, _ = _login(sessions, clock)
    session_id, secret_text = cookie.split(".")
    with session_scope(sessions) as s:
        doc = s.scalars(sa.select(WrappedKeyRing).where(WrappedKeyRing.holder.like("session:%"))).one()
        holder, document = doc.holder, doc.document
    assert document["kdf"] == {"alg": "raw"}
    secret = packets.b64u_decode(secret_text)
    assert packets.unwrap_keyring(document, holder=holder, secret=secret).to_json() == ring.to_json()
    for wrong in (bytes(32), bytes([secret[0] ^ 1]) + secret[1:]):
        with pytest.raises(packets.WrongPassphrase):
            packets.unwrap_keyring(document, holder=holder, secret=wrong)
    with session_scope(sessions) as s:
        principal, resumed = accounts.resume(s, cookie, clock=clock)
    assert resumed.to_json() == ring.to_json() and principal.role == "caseworker"
    tampered = f"{session_id}.{packets.b64u_encode(bytes(32))}"
    with pytest.raises(Unauthenticated):
        with session_scope(sessions) as s:
            accounts.resume(s, tampered, clock=clock)


def test_a_user_invited_without_the_key_ring_signs_in_without_it(enrolled, clock):
    sessions, _ring, _ = enrolled
    _member(sessions, clock, None)
    _cookie, principal, opened = _login(sessions, clock)
    assert opened is None and principal.agency_id == "pp-shelter-a"


def test_an_invitation_works_once(enrolled, clock):
    sessions, ring, _ = enrolled
    _user_id, token = _invite(sessions, clock, ring)
    with session_scope(sessions) as s:
        accounts.accept_invitation(s, token, PASSWORD, clock, kdf_params=FAST_KDF)
    with pytest.raises(Conflict, match="already used"):
        with session_scope(sessions) as s:
            accounts.accept_invitation(s, token, "another good password", clock, kdf_params=FAST_KDF)


def test_an_expired_invitation_is_refused(enrolled, clock):
    sessions, ring, _ = enrolled
    _user_id, token = _invite(sessions, clock, ring)
    clock.advance(days=8)
    with pytest.raises(Conflict, match="expired"):
        with session_scope(sessions) as s:
            accounts.accept_invitation(s, token, PASSWORD, clock, kdf_params=FAST_KDF)


@pytest.mark.parametrize("token", ["", "nonsense", "a.b", "x" * 22 + "." + "A" * 43])
def test_a_made_up_invitation_is_not_found(enrolled, clock, token):
    sessions, _ring, _ = enrolled
    with pytest.raises(NotFound):
        with session_scope(sessions) as s:
            accounts.accept_invitation(s, token, PASSWORD, clock, kdf_params=FAST_KDF)


def test_a_short_password_is_refused_and_the_invitation_stays_usable(enrolled, clock):
    sessions, ring, _ = enrolled
    _user_id, token = _invite(sessions, clock, ring)
    with pytest.raises(BadInput, match="at least 10"):
        with session_scope(sessions) as s:
            accounts.accept_invitation(s, token, "short", clock, kdf_params=FAST_KDF)
    with session_scope(sessions) as s:
        accounts.accept_invitation(s, token, PASSWORD, clock, kdf_params=FAST_KDF)


def test_add_user_checks_role_agency_and_key_ring(enrolled, clock, settings):
    sessions, ring, _ = enrolled
    with session_scope(sessions) as s:
        with pytest.raises(BadInput, match="committee"):
            accounts.add_user(s, agency_id="pp-ahtjp", role="coordinator", name="C", clock=clock)
        with pytest.raises(BadInput, match="role"):
            accounts.add_user(s, agency_id="pp-ahtjp", role="boss", name="C", clock=clock)
        with pytest.raises(NotFound):
            accounts.add_user(s, agency_id="nowhere", role="officer", name="C", clock=clock)
        with pytest.raises(BadInput, match="pp-shelter-a's"):
            accounts.add_user(s, agency_id="pp-shelter-b", role="caseworker", name="C", clock=clock, keyring=ring)
        user, _ = accounts.add_user(s, agency_id="pp-ahtjp", role="officer", name="Sok Dara", clock=clock)
        assert user.username == "pp-ahtjp.sok-dara"
        again, _ = accounts.add_user(s, agency_id="pp-ahtjp", role="officer", name="Sok Dara", clock=clock)
        assert again.username == "pp-ahtjp.sok-dara-2"
        with pytest.raises(Conflict):
            accounts.add_user(s, agency_id="pp-ahtjp", role="officer", name="X", username="pp-ahtjp.sok-dara",
                              clock=clock)


# --- failures and lock-out -------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_get_the_same_error(enrolled, clock):
    sessions, ring, _ = enrolled
    _member(sessions, clock, ring)
    wrong = _login_error(sessions, clock, "shelter.worker", "not the password")
    unknown = _login_error(sessions, clock, "nobody.here", PASSWORD)
    assert (wrong.code, wrong.message, wrong.status) == (unknown.code, unknown.message, unknown.status)


def test_wrong_passwords_make_the_address_and_the_account_wait_but_lock_no_one_out(enrolled, clock):
    """The old lock-out (5 wrong, 15 minutes for everyone) is gone: waits grow per address and per
    account, and a device the user signed in on before is held back by neither."""
    sessions, ring, _ = enrolled
    _member(sessions, clock, ring)
    phone = _login(sessions, clock, address="198.51.100.7")  # the user's own phone, signed in before
    assert phone.device, "a first sign-in on a device gives it a known-device cookie"
    attacker = "203.0.113.66"
    for _ in range(accounts.THROTTLE_FREE):
        err = _login_error(sessions, clock, "shelter.worker", "not the password", address=attacker)
        assert err.code == "login_failed"
    with pytest.raises(RateLimited) as waited:  # even the right password waits, from the attacker's address
        _login(sessions, clock, address=attacker)
    assert waited.value.retry_after == 30 and waited.value.status == 429
    with pytest.raises(RateLimited):  # the account waits too, for a device it does not know ...
        _login(sessions, clock, address="192.0.2.44")
    signin = _login(sessions, clock, address="192.0.2.44", device=phone.device)  # ... but not the user's phone
    assert signin.ring is not None and signin.device is None
    clock.advance(seconds=31)
    unknown = _login_error(sessions, clock, "nobody.here", PASSWORD, address=attacker)
    assert unknown.message == err.message  # an unknown user name reads as a wrong password
    with pytest.raises(RateLimited) as longer:  # the next wait is twice as long
        _login(sessions, clock, address=attacker)
    assert longer.value.retry_after == 60


def test_a_stolen_device_cookie_buys_a_few_guesses_only(enrolled, clock):
    sessions, ring, _ = enrolled
    _member(sessions, clock, ring)
    device = _login(sessions, clock).device
    for _ in range(accounts.DEVICE_FAILURES):
        _login_error(sessions, clock, "shelter.worker", "guess", device=device, address="203.0.113.5")
    with session_scope(sessions) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(KnownDevice)) == 0, "the device is forgotten"


def test_four_failures_then_success_resets_the_account_count(enrolled, clock):
    sessions, ring, _ = enrolled
    _member(sessions, clock, ring)
    for _ in range(4):
        _login_error(sessions, clock, "shelter.worker", "not the password", address="192.0.2.1")
    _login(sessions, clock, address="192.0.2.2")
    for _ in range(4):
        _login_error(sessions, clock, "shelter.worker", "not the password", address="192.0.2.3")
    cookie, principal, _ring = _login(sessions, clock, address="192.0.2.4")  # the success in between reset it
    assert cookie and principal.user_id is not None
    with session_scope(sessions) as s:
        user = s.scalars(sa.select(User).where(User.username == "shelter.worker")).one()
        assert user.failed_logins == 0 and user.locked_until is None


# --- sessions ------------------------------------------------------------------------------------------


def test_an_expired_session_is_refused(enrolled, clock):
    sessions, ring, _ = enrolled
    _member(sessions, clock, ring)
    cookie, _, _ = _login(sessions, clock)
    clock.advance(hours=11, minutes=59)
    with session_scope(sessions) as s:
        accounts.resume(s, cookie, clock=clock)
    clock.advance(minutes=1)
    with pytest.raises(Unauthenticated, match="sign in again"):
        with session_scope(sessions) as s:
            accounts.resume(s, cookie, clock=clock)
    with session_scope(sessions) as s:
        assert accounts.purge_expired(s, clock) >= 1
    with session_scope(sessions) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(UserSession)) == 0
        assert not list(s.scalars(sa.select(WrappedKeyRing.holder).where(WrappedKeyRing.holder.like("session:%"))))


def test_logout_deletes_the_session_and_its_key_ring_copy(enrolled, clock):
    sessions, ring, _ = enrolled
    _member(sessions, clock, ring)
    cookie, _, _ = _login(sessions, clock)
    with session_scope(sessions) as s:
        accounts.logout(s, cookie, clock=clock)
    with session_scope(sessions) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(UserSession)) == 0
        assert not list(s.scalars(sa.select(WrappedKeyRing.holder).where(WrappedKeyRing.holder.like("session:%"))))
    with pytest.raises(Unauthenticated):
        with session_scope(sessions) as s:
            accounts.resume(s, cookie, clock=clock)


@pytest.mark.parametrize("cookie", ["", "abc", "a.b.c", "x.", ".y"])
def test_a_malformed_cookie_is_unauthenticated(enrolled, clock, cookie):
    sessions, _ring, _ = enrolled
    with pytest.raises(Unauthenticated):
        with session_scope(sessions) as s:
            accounts.resume(s, cookie, clock=clock)


# --- recovery ------------------------------------------------------------------------------------------


def test_password_reset_with_the_recovery_code(enrolled, clock):
    sessions, ring, code = enrolled
    user_id = _member(sessions, clock, ring)
    old_cookie, _, _ = _login(sessions, clock)
    with session_scope(sessions) as s:
        accounts.reset_password_with_recovery(s, user_id, code, "a brand new passphrase", clock, kdf_params=FAST_KDF)
    _login_error(sessions, clock, "shelter.worker", PASSWORD)
    with pytest.raises(Unauthenticated):
        with session_scope(sessions) as s:
            accounts.resume(s, old_cookie, clock=clock)
    _cookie, _principal, opened = _login(sessions, clock, password="a brand new passphrase")
    assert opened.to_json() == ring.to_json()


# --- API tokens ----------------------------------------------------------------------------------------


def test_token_authenticates_its_agency_system_until_revoked(enrolled, clock):
    sessions, _ring, _ = enrolled
    with session_scope(sessions) as s:
        raw = accounts.create_token(s, "pp-shelter-a", "case system", clock)
    assert raw.startswith("rh_") and len(raw) == 46
    with session_scope(sessions) as s:
        principal = accounts.authenticate_token(s, raw, clock)
        stored = s.scalars(sa.select(ApiToken)).one()
        assert stored.token_hash != raw and raw not in stored.token_hash and stored.prefix == raw[:11]
    assert (principal.kind, principal.role, principal.agency_id, principal.agency_kind) == \
        ("token", "agency_system", "pp-shelter-a", "shelter")
    assert principal.display == f"token:{principal.token_id}"
    with session_scope(sessions) as s:
        accounts.revoke_token(s, principal.token_id, clock)
    with pytest.raises(Unauthenticated):
        with session_scope(sessions) as s:
            accounts.authenticate_token(s, raw, clock)


@pytest.mark.parametrize("raw", ["", "rh_", "rh_" + "A" * 43, "Bearer x", "x" * 500])
def test_a_wrong_token_is_unauthenticated(enrolled, clock, raw):
    sessions, _ring, _ = enrolled
    with pytest.raises(Unauthenticated):
        with session_scope(sessions) as s:
            accounts.authenticate_token(s, raw, clock)


def test_token_last_used_is_written_at_most_once_a_minute(enrolled, clock):
    sessions, _ring, _ = enrolled
    with session_scope(sessions) as s:
        raw = accounts.create_token(s, "pp-shelter-a", "case system", clock)
    first = clock.now()
    for seconds in (0, 30, 59):
        clock.set(first + dt.timedelta(seconds=seconds))
        with session_scope(sessions) as s:
            accounts.authenticate_token(s, raw, clock)
    with session_scope(sessions) as s:
        assert s.scalars(sa.select(ApiToken.last_used_at)).one() == first
    clock.set(first + dt.timedelta(seconds=61))
    with session_scope(sessions) as s:
        accounts.authenticate_token(s, raw, clock)
    with session_scope(sessions) as s:
        assert s.scalars(sa.select(ApiToken.last_used_at)).one() == first + dt.timedelta(seconds=61)


# --- the database alone opens nothing ---------------------------------------------------------------


def _everything_in_the_database(s) -> list[str]:
    """Every text value of every column of the account tables: what a thief of the database has."""
    values: list[str] = []
    for model in (User, Invitation, UserSession, ApiToken, WrappedKeyRing):
        for row in s.scalars(sa.select(model)):
            for column in model.__table__.columns:
                value = getattr(row, column.key)
                if isinstance(value, str) and value:
                    values.append(value)
    return values


def test_the_database_alone_opens_no_wrapped_key_ring(enrolled, clock):
    sessions, ring, _ = enrolled
    _member(sessions, clock, ring)
    _login(sessions, clock)
    _invite(sessions, clock, ring, username="pending.invitee")  # an invitation not yet accepted
    with session_scope(sessions) as s:
        rows = [(w.holder, w.document) for w in s.scalars(sa.select(WrappedKeyRing))]
        known = _everything_in_the_database(s)
    holders = {h.split(":")[0] for h, _ in rows}
    assert holders == {"recovery", "user", "session", "invite"}
    passphrases = ["", " ", "password", "recovery", PASSWORD[:-1]] + known
    secrets_ = [bytes(32), b"\xff" * 32] + [bytes.fromhex(v) for v in known if len(v) == 64 and _is_hex(v)]
    for holder, document in rows:
        for guess in passphrases:
            with pytest.raises((packets.WrongPassphrase, ValueError)):
                packets.unwrap_keyring(document, holder=holder, passphrase=guess)
        for guess in secrets_:
            with pytest.raises(packets.WrongPassphrase):
                packets.unwrap_keyring(document, holder=holder, secret=guess)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
        return True
    except ValueError:
        return False
