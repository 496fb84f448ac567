"""The demo: users for every demo agency, two agency systems for `hub client`, all with one demo secret.

Demo mode only (`hub init --demo`; refused in production mode). The one demo password
is generated on the first run and kept in ``instance/demo-password.txt`` (mode 0600); it
is every demo user's password and the passphrase of the demo key ring files. Recovery
codes of the demo agencies are kept in ``instance/demo-recovery-codes.txt`` (0600) so
that a second run can still unlock key rings for users it adds. Everything is idempotent.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hub import packets
from hub.accounts import passwords, totp
from hub.accounts import service as accounts
from hub.accounts.models import ApiToken, Invitation, User
from hub.clock import Clock
from hub.directory import service as directory
from hub.directory.models import Agency
from hub.errors import HubError

# Roles of the demo users of each kind of agency; every agency also gets an agency_admin.
ROLES_BY_KIND = {
    "police": ("officer",),
    "shelter": ("caseworker",),
    "social_affairs": ("caseworker",),
    "legal_aid": ("caseworker",),
    "iom": ("caseworker",),
    "committee": ("coordinator",),
}
# Agencies whose own systems the README drives with `hub client`.
SYSTEM_AGENCIES = ("pp-ahtjp", "pp-shelter-a")

PASSWORD_FILE = "demo-password.txt"
TOTP_FILE = "demo-totp-secret.txt"
RECOVERY_FILE = "demo-recovery-codes.txt"
DEMO_DIR = "demo"


def demo_code(instance_dir: Path, at) -> str | None:
    """The code an authenticator holding the demo TOTP secret shows at ``at`` (None before `hub init --demo`)."""
    path = Path(instance_dir) / TOTP_FILE
    return totp.code_now(path.read_text(encoding="utf-8").strip(), at) if path.exists() else None


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    agency_id: str
    created: bool


def _write_private(path: Path, text: str, *, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "a" if append else "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def demo_password(instance_dir: Path) -> str:
    """The demo password: generated once, then read from instance/demo-password.txt."""
    path = Path(instance_dir) / PASSWORD_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    password = "demo-" + secrets.token_urlsafe(12)
    _write_private(path, password + "\n")
    return password


def demo_totp_secret(instance_dir: Path) -> str:
    """The demo's one TOTP secret, for every demo login whose role signs in with a code (like the demo
    password): generated once, kept in instance/demo-totp-secret.txt (0600). Demo only."""
    path = Path(instance_dir) / TOTP_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = totp.new_secret()
    _write_private(path, secret + "\n")
    return secret


def recovery_codes_path(instance_dir: Path) -> Path:
    return Path(instance_dir) / RECOVERY_FILE


def save_recovery_codes(instance_dir: Path, codes: dict[str, str]) -> Path:
    """Append new codes (a later line for the same agency wins)."""
    path = recovery_codes_path(instance_dir)
    header = "" if path.exists() else "# Demo only: recovery codes of the demo agencies (agency code). Keep private.\n"
    _write_private(path, header + "".join(f"{a} {c}\n" for a, c in codes.items()), append=True)
    return path


def read_recovery_codes(instance_dir: Path) -> dict[str, str]:
    path = recovery_codes_path(instance_dir)
    codes: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#"):
                codes[parts[0]] = parts[1]
    return codes


class RingSource:
    """Unlocked key rings of demo agencies: the ones enrolled in this run, else from their recovery code."""

    def __init__(self, session: Session, fresh: dict[str, packets.KeyRing], codes: dict[str, str]):
        self.session, self.rings, self.codes = session, dict(fresh), codes

    def get(self, agency_id: str) -> packets.KeyRing | None:
        if agency_id not in self.rings:
            code = self.codes.get(agency_id)
            ring = None
            if code and directory.is_enrolled(self.session, agency_id):
                try:
                    ring = accounts.recover_keyring(self.session, agency_id, code)
                except (HubError, packets.PacketError):  # a stale code from an older database
                    ring = None  # the users are added without the key ring
            self.rings[agency_id] = ring
        return self.rings[agency_id]


def add_demo_users(session: Session, rings: RingSource, password: str, *, clock: Clock,
                   kdf_params: dict | None = None, totp_secret: str | None = None, secret_key: str | None = None,
                   totp_roles: tuple[str, ...] = ()) -> list[DemoLogin]:
    """An agency_admin and the kind's working role for every active agency (username <agency>.<role>).

    With ``totp_secret``, the logins of ``totp_roles`` have TOTP on with that one demo secret (sealed
    under ``secret_key``), so that `make run` can sign them in with a code from it.
    """
    logins: list[DemoLogin] = []
    shared_hash: str | None = None
    now = clock.now()
    for agency in directory.list_agencies(session):
        for role in (*ROLES_BY_KIND.get(agency.kind, ()), "agency_admin"):
            username = f"{agency.id}.{role.replace('agency_', '')}"
            existing = session.scalar(sa.select(User).where(User.username == username))
            if existing is not None:
                if totp_secret and secret_key and role in totp_roles and not existing.totp_secret:
                    existing.totp_secret = totp.seal(secret_key, existing.id, totp_secret)
                logins.append(DemoLogin(username, role, agency.id, created=False))
                continue
            name = f"Demo {role.replace('_', ' ')}, {agency.short_name}"
            user, _token = accounts.add_user(session, agency_id=agency.id, role=role, name=name, username=username,
                                             lang="en", clock=clock, actor="hub")
            if shared_hash is None:
                shared_hash = passwords.hash_password(password, params=kdf_params)
            user.password_hash = shared_hash
            for invitation in session.scalars(sa.select(Invitation).where(Invitation.user_id == user.id)):
                invitation.used_at = now  # the demo sets the password itself
            ring = rings.get(agency.id)
            if ring is not None:
                accounts.wrap_for_user(session, user, ring, password, clock=clock, kdf_params=kdf_params)
            if totp_secret and secret_key and role in totp_roles:
                user.totp_secret = totp.seal(secret_key, user.id, totp_secret)
            logins.append(DemoLogin(username, role, agency.id, created=True))
    session.flush()
    return logins


def write_agency_systems(session: Session, rings: RingSource, password: str, instance_dir: Path, *, clock: Clock,
                         kdf_params: dict | None = None) -> dict[str, tuple[Path, Path]]:
    """For each SYSTEM_AGENCIES: an API token file and an agency-held wrapped key ring file (holder system:<id>).

    Kept if already there (and the token still valid). Returns {agency: (token file, key ring file)}.
    """
    out = {}
    folder = Path(instance_dir) / DEMO_DIR
    for agency_id in SYSTEM_AGENCIES:
        if session.get(Agency, agency_id) is None:
            continue
        token_path = folder / f"{agency_id}.token"
        ring_path = folder / f"{agency_id}.keyring.json"
        if not _token_valid(session, token_path):
            token = accounts.create_token(session, agency_id, "demo agency system", clock)
            _write_private(token_path, token + "\n")
        if not ring_path.exists():
            ring = rings.get(agency_id)
            if ring is None:
                continue
            doc = packets.wrap_keyring(ring, holder=f"system:{agency_id}", passphrase=password, kdf_params=kdf_params)
            _write_private(ring_path, json.dumps(doc, indent=2) + "\n")
        out[agency_id] = (token_path, ring_path)
    return out


def _token_valid(session: Session, path: Path) -> bool:
    if not path.exists():
        return False
    digest = hashlib.sha256(path.read_text(encoding="utf-8").strip().encode()).hexdigest()
    token = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == digest))
    return token is not None and token.revoked_at is None
