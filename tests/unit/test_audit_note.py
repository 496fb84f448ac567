"""C2SP signed notes and checkpoints: the exact text, key ids, and what is refused."""
from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from hub.audit import note
from hub.config import load_settings

SEED = bytes(range(32))
KEY = ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
PUB = KEY.public_key().public_bytes_raw()
ORIGIN = "refhub/hub.example"
ROOT = hashlib.sha256(b"root").digest()


def test_the_signed_checkpoint_is_the_c2sp_text():
    text = note.sign(ORIGIN, 42, ROOT, KEY)
    body = f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    kid = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + PUB).digest()[:4]
    sig = KEY.sign(body.encode())  # Ed25519 is deterministic
    assert text == body + "\n" + f"\u2014 {ORIGIN} {base64.b64encode(kid + sig).decode()}\n"
    typed = base64.b64encode(b"\x01" + PUB).decode()
    assert note.verifier_key(ORIGIN, PUB) == f"{ORIGIN}+{kid.hex()}+{typed}"
    cp = note.open_checkpoint(text, note.verifier_key(ORIGIN, PUB))
    assert (cp.origin, cp.size, cp.root) == (ORIGIN, 42, ROOT)


def test_extension_lines_and_other_signatures_are_allowed():
    text = note.sign(ORIGIN, 7, ROOT, KEY)
    other = ed25519.Ed25519PrivateKey.generate()
    cosigned = text + f"\u2014 witness.example {base64.b64encode(b'abcd' + other.sign(b'x')).decode()}\n"
    assert note.open_checkpoint(cosigned, note.verifier_key(ORIGIN, PUB)).size == 7


@pytest.mark.parametrize("mutate", [
    lambda t: t.replace("\n7\n", "\n8\n"),
    lambda t: t.replace(ORIGIN + "\n", "refhub/other\n", 1),
    lambda t: t.replace("\n\n", "\n"),
    lambda t: t.rstrip("\n"),
    lambda t: t.replace("\n", "\r\n"),
    lambda t: t.replace("\u2014", "-"),
    lambda t: t[: t.rindex(" ") + 1] + base64.b64encode(b"\0" * 68).decode() + "\n",
    lambda t: t.replace("\n7\n", "\n07\n"),
])
def test_changed_checkpoints_are_refused(mutate):
    text = note.sign(ORIGIN, 7, ROOT, KEY)
    with pytest.raises(note.NoteError):
        note.open_checkpoint(mutate(text), note.verifier_key(ORIGIN, PUB))


def test_a_verifier_key_with_the_wrong_key_id_is_refused():
    line = note.verifier_key(ORIGIN, PUB)
    origin, kid, key = line.split("+", 2)
    with pytest.raises(note.NoteError):
        note.parse_verifier_key(f"{origin}+00000000+{key}")
    with pytest.raises(note.NoteError):
        note.parse_verifier_key(f"refhub/other+{kid}+{key}")


@pytest.mark.parametrize("url, origin", [("http://127.0.0.1:5000", "refhub/127.0.0.1:5000"),
                                         ("https://hub.example", "refhub/hub.example"),
                                         ("https://hub.example:8443/base", "refhub/hub.example:8443")])
def test_the_origin_defaults_to_the_public_host(tmp_path, url, origin):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[hub]\n")
    settings = load_settings(cfg, env={"HUB_PUBLIC_BASE_URL": url, "HUB_SECRET_KEY": "s" * 40})
    assert settings.audit_origin == origin
    cfg.write_text('[audit]\norigin = "example.org/refhub-log"\n')
    assert load_settings(cfg, env={"HUB_SECRET_KEY": "s" * 40}).audit_origin == "example.org/refhub-log"
    cfg.write_text('[audit]\norigin = "bad origin"\n')
    with pytest.raises(Exception, match="audit.origin"):
        load_settings(cfg, env={"HUB_SECRET_KEY": "s" * 40})
