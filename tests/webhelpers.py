"""Helpers for the web tests: members of the demo network with passwords, a signed-in test client."""
from __future__ import annotations

import base64
import hashlib
import io
import re

import sqlalchemy as sa
from PIL import Image

from hub.accounts import service as accounts
from hub.accounts import totp
from hub.accounts.models import User
from hub.db import session_scope
from tests.factories import FAST_KDF

PASSWORD = "a long test passphrase 42"
TEST_SECRET_KEY = "t" * 48  # tests/instance.make_settings's HUB_SECRET_KEY
TOTP_ROLES = ("coordinator", "agency_admin", "hub_admin")  # config.toml's security.require_totp_roles


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def totp_secret_for(username: str) -> str:
    """The test authenticator's secret for a member (the same every run)."""
    return base64.b32encode(hashlib.sha256(f"totp:{username}".encode()).digest()[:20]).decode("ascii")


def enrol_totp(db, username: str, secret_key: str = TEST_SECRET_KEY) -> str:
    """Turn TOTP on for a member as if they had enrolled; returns the secret their app holds."""
    secret = totp_secret_for(username)
    with session_scope(db) as s:
        user = s.scalars(sa.select(User).where(User.username == username)).one()
        user.totp_secret = totp.seal(secret_key, user.id, secret)
    return secret


def add_member(db, network, clock, agency: str, role: str, *, username: str | None = None, lang: str = "en",
               name: str = "Fictional Member") -> str:
    """A member with PASSWORD and a copy of the agency's key ring (and TOTP where the role needs it)."""
    with session_scope(db) as s:
        user, token = accounts.add_user(s, agency_id=agency, role=role, name=name, lang=lang,
                                        username=username or f"{agency}.{role}", clock=clock,
                                        keyring=network.rings[agency])
        accounts.accept_invitation(s, token, PASSWORD, clock, kdf_params=FAST_KDF)
        username = user.username
    if role in TOTP_ROLES:
        enrol_totp(db, username)
    return username


def code_for(client, username: str) -> str:
    """What the member's authenticator shows now (the app's clock), from their sealed secret. The last
    time step used is forgotten first, so that a test on a clock that does not move can sign the same
    member in again."""
    ctx = getattr(client, "application", client).extensions["hub"]  # a test client, or the app itself
    with session_scope(ctx.sessions) as s:
        user = s.scalars(sa.select(User).where(User.username == username)).one()
        user.totp_last_counter = None
        secret = totp.unseal(ctx.settings.secret_key, user.id, user.totp_secret)
    return totp.code_now(secret, ctx.clock.now())


def sign_in(client, username: str, password: str = PASSWORD):
    page = client.get("/login")
    resp = client.post("/login", data={"username": username, "password": password, "csrf_token": csrf(page.text)})
    assert resp.status_code == 302, resp.text
    if "/login/totp" in resp.headers["Location"]:
        step = client.get(resp.headers["Location"])
        resp = client.post(resp.headers["Location"], data={"code": code_for(client, username),
                                                           "csrf_token": csrf(step.text)})
        assert resp.status_code == 302 and "/login" not in resp.headers["Location"], resp.text
    return resp


def photo_bytes(width: int = 3000, height: int = 2000, colour=(200, 40, 40)) -> bytes:
    """A large, fictional "camera" photo (a coloured rectangle) as JPEG."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=95)
    return out.getvalue()
