"""Helpers for the web tests: members of the demo network with passwords, a signed-in test client."""
from __future__ import annotations

import io
import re

from PIL import Image

from hub.accounts import service as accounts
from hub.db import session_scope
from tests.factories import FAST_KDF

PASSWORD = "a long test passphrase 42"


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def add_member(db, network, clock, agency: str, role: str, *, username: str | None = None, lang: str = "en",
               name: str = "Fictional Member") -> str:
    """A member with PASSWORD and a copy of the agency's key ring; returns the username."""
    with session_scope(db) as s:
        user, token = accounts.add_user(s, agency_id=agency, role=role, name=name, lang=lang,
                                        username=username or f"{agency}.{role}", clock=clock,
                                        keyring=network.rings[agency])
        accounts.accept_invitation(s, token, PASSWORD, clock, kdf_params=FAST_KDF)
        return user.username


def sign_in(client, username: str, password: str = PASSWORD):
    page = client.get("/login")
    resp = client.post("/login", data={"username": username, "password": password, "csrf_token": csrf(page.text)})
    assert resp.status_code == 302, resp.text
    return resp


def photo_bytes(width: int = 3000, height: int = 2000, colour=(200, 40, 40)) -> bytes:
    """A large, fictional "camera" photo (a coloured rectangle) as JPEG."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=95)
    return out.getvalue()
