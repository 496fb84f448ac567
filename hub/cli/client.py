"""`hub client`: an agency system that keeps its own key ring (agency-held custody).

Sealing and opening happen on the agency's machine; the hub only sees packets.
Output is JSON on stdout; errors are one line on stderr (exit 1 refused, 2 bad input).
"""
from __future__ import annotations

import getpass
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import click
import requests

from hub import packets
from hub.audit import note, tree

TIMEOUT = 60


class ClientError(click.ClickException):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"hub client: {self.message}", err=True)


class FileSeenPacketIds:
    """Packet ids this agency has opened, with the digest of each packet (PROTOCOL check 5).

    Reading the very same stored packet again is not a replay; the same packet id
    arriving with other bytes is.
    """

    def __init__(self, path: Path, digest: str):
        self.path = path
        self.digest = digest
        self._ids: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                pid, _, dig = line.partition(" ")
                self._ids.setdefault(pid, dig)

    def seen(self, packet_id: str) -> bool:
        return packet_id in self._ids and self._ids[packet_id] != self.digest

    def mark(self, packet_id: str) -> None:
        if packet_id not in self._ids:
            self._ids[packet_id] = self.digest
            with self.path.open("a") as fh:
                fh.write(f"{packet_id} {self.digest}\n")


class Hub:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, f"{self.url}/api/v1{path}", timeout=TIMEOUT, **kw)
        except requests.RequestException as exc:
            raise ClientError(f"cannot reach the hub at {self.url} ({type(exc).__name__}); check --hub") from None
        try:
            data = resp.json()
        except ValueError:
            raise ClientError(f"the hub answered {resp.status_code} without JSON; check --hub") from None
        if resp.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            raise ClientError(f"{err.get('message', 'refused')} [{err.get('code', resp.status_code)}]",
                              exit_code=2 if resp.status_code in (400, 413, 422) else 1)
        return data

    def bundle(self, agency: str) -> packets.PublicBundle:
        return packets.PublicBundle.from_dict(self.call("GET", f"/agencies/{agency}/keys"))


def _keyring(path: str) -> packets.KeyRing:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read the key ring {path} ({exc.__class__.__name__}); check --keyring", 2) from None
    passphrase = os.environ.get("HUB_KEYRING_PASSPHRASE")
    if passphrase is None:
        if not sys.stdin.isatty():
            raise ClientError("set HUB_KEYRING_PASSPHRASE or run in a terminal to type the passphrase", 2)
        passphrase = getpass.getpass("key ring passphrase: ")
    try:
        return packets.unwrap_keyring(doc, holder=doc.get("holder", ""), passphrase=passphrase)
    except packets.PacketError as exc:
        raise ClientError(str(exc), 2) from None


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


pass_opts = [
    click.option("--hub", "hub_url", required=True, envvar="HUB_URL", help="hub base URL, e.g. http://127.0.0.1:5000"),
    click.option("--token", required=True, envvar="HUB_TOKEN", help="API token from `hub tokens create`"),
    click.option("--keyring", required=True, envvar="HUB_KEYRING", type=click.Path(dir_okay=False),
                 help="the agency's wrapped key ring file"),
]


def common(fn):
    for opt in reversed(pass_opts):
        fn = opt(fn)
    return fn


@click.group("client")
def client() -> None:
    """Talk to a hub as an agency system that holds its own keys."""


@client.command("send")
@common
@click.option("--to", "to", required=True, help="receiving agency id")
@click.option("--urgency", type=click.Choice(["urgent", "normal"]), required=True)
@click.option("--child", is_flag=True, help="the person is a child (urgent policy)")
@click.option("--province", required=True, help="ISO 3166-2:KH code, e.g. KH-12")
@click.option("--needs", required=True, help="comma-separated: shelter,medical,...")
@click.option("--body", "body_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="the referral body, a JSON object")
@click.option("--previous", default=None, help="id of a declined referral this one re-routes")
def send(hub_url, token, keyring, to, urgency, child, province, needs, body_path, previous):
    """Seal a body to the recipient and to your own archive, and submit it."""
    raw = Path(body_path).read_bytes()
    try:
        if not isinstance(json.loads(raw), dict):
            raise ValueError
    except ValueError:
        raise ClientError(f"{body_path} must hold a JSON object (the referral body)", 2) from None
    ring = _keyring(keyring)
    hub = Hub(hub_url, token)
    referral_id = str(uuid.uuid4())
    pkts = [json.loads(packets.seal(raw, sender=ring, recipient=hub.bundle(reader), referral_id=referral_id))
            for reader in (to, ring.agency)]
    payload = {"to": to, "urgency": urgency, "child": child, "province": province,
               "needs": [n.strip() for n in needs.split(",") if n.strip()], "packets": pkts}
    if previous:
        payload["previous_id"] = previous
    # The referral id doubles as the idempotency key: a retry after a lost answer stores nothing twice.
    _emit(hub.call("POST", "/referrals", json=payload, headers={"Idempotency-Key": referral_id}))


def _list(box):
    @common
    @click.option("--status", default=None)
    def cmd(hub_url, token, keyring, status):
        params = {"box": box}
        if status:
            params["status"] = status
        _emit(Hub(hub_url, token).call("GET", "/referrals", params=params)["referrals"])

    cmd.__doc__ = f"List the {box} (metadata only)."
    return cmd


client.command("inbox")(_list("inbox"))
client.command("sent")(_list("sent"))


@client.command("open")
@common
@click.argument("referral_id")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write the body here instead of stdout")
def open_cmd(hub_url, token, keyring, referral_id, out):
    """Fetch the packet addressed to your agency and open it locally."""
    ring = _keyring(keyring)
    hub = Hub(hub_url, token)
    data = hub.call("GET", f"/referrals/{referral_id}")
    wire = data.get("packet")
    if not wire:
        raise ClientError("the hub holds no packet for your agency on this referral (shredded or never sent)")
    sender = hub.bundle(data["from"])
    raw = json.dumps(wire, separators=(",", ":")).encode()
    seen = FileSeenPacketIds(Path(keyring).with_suffix(".seen"), packets.packet_sha256(raw))
    try:
        opened = packets.open_packet(raw, reader=ring, sender=sender, seen=seen)
    except packets.PacketError as exc:
        raise ClientError(f"the packet does not open: {exc}") from None
    if opened.header.referral_id != referral_id:
        raise ClientError("the packet belongs to another referral; do not trust it")
    if out:
        Path(out).write_bytes(opened.body)
        _emit({"id": referral_id, "written": out})
    else:
        sys.stdout.write(opened.body.decode("utf-8") + "\n")


def _action(path: str, fields: tuple[str, ...] = ()):
    @common
    @click.argument("referral_id")
    def cmd(hub_url, token, keyring, referral_id, **kw):
        body = {k: v for k, v in kw.items() if v is not None}
        _emit(Hub(hub_url, token).call("POST", f"/referrals/{referral_id}/{path}", json=body))

    for name in fields:
        required = name in ("reason", "outcome")
        cmd = click.option(f"--{name}", required=required)(cmd)
    cmd.__doc__ = f"POST /referrals/ID/{path}."
    return cmd


client.command("ack")(_action("acknowledge"))
client.command("accept")(_action("accept"))
client.command("start-care")(_action("start-care"))
client.command("fail")(_action("fail", ("reason",)))
client.command("decline")(_action("decline", ("reason",)))
client.command("withdraw")(_action("withdraw", ("reason",)))
client.command("close")(_action("close", ("outcome", "note")))


# --- hub client audit watch ---------------------------------------------------------------------


@client.group("audit")
def audit_group() -> None:
    """Hold the hub to its audit log (public checkpoints and proofs; no token needed)."""


def _public_get(url: str, path: str, **params: Any) -> requests.Response:
    try:
        resp = requests.get(f"{url.rstrip('/')}{path}", params=params or None, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ClientError(f"cannot reach the hub at {url} ({type(exc).__name__}); check --hub") from None
    if resp.status_code != 200:
        raise ClientError(f"GET {path} answered {resp.status_code}; is {url} a refhub hub with a signed checkpoint?")
    return resp


def _load_state(path: Path) -> dict:
    if not path.exists():
        return {"key": None, "checkpoints": [], "rejected": []}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("checkpoints"), list):
            raise ValueError
    except (OSError, ValueError):
        raise ClientError(f"{path} is not a checkpoint file written by `hub client audit watch`", 2) from None
    state.setdefault("rejected", [])
    return state


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    os.replace(tmp, path)


@audit_group.command("watch")
@click.option("--hub", "hub_url", required=True, envvar="HUB_URL", help="hub base URL, e.g. http://127.0.0.1:5000")
@click.option("--state", "state_path", required=True, type=click.Path(dir_okay=False),
              help="file that keeps the checkpoints seen so far (made on the first run)")
@click.option("--key", "key_line", default=None,
              help="the hub's verifier key line, got out of band; default: trust GET /audit/key on the first run")
def audit_watch(hub_url: str, state_path: str, key_line: str | None) -> None:
    """Fetch the latest checkpoint and prove it is consistent with the last one kept (the log only grew)."""
    path = Path(state_path)
    state = _load_state(path)
    served_key = _public_get(hub_url, "/audit/key").text.strip()
    pinned = key_line.strip() if key_line else state.get("key") or served_key
    try:
        note.parse_verifier_key(pinned)
    except note.NoteError as exc:
        raise ClientError(f"the verifier key is not usable: {exc}", 2) from None
    if state.get("key") and state["key"] != pinned:
        raise ClientError("--key differs from the key this file has pinned; use a new --state file for a new key", 2)

    def reject(why: str, text: str | None) -> None:
        state["rejected"].append({"reason": why, "checkpoint": text})
        _save_state(path, state)
        raise ClientError(f"the hub's log is not consistent: {why}")

    if served_key != pinned:
        reject("GET /audit/key serves another key than the one pinned", None)
    text = _public_get(hub_url, "/audit/checkpoint").text
    try:
        cp = note.open_checkpoint(text, pinned)
    except note.NoteError as exc:
        reject(f"the latest checkpoint does not verify ({exc})", text)
    previous = state["checkpoints"][-1] if state["checkpoints"] else None
    if previous is not None:
        old_size, old_root = previous["size"], note.unb64(previous["root"], 32)
        if cp.size < old_size:
            reject(f"the tree shrank from {old_size} to {cp.size} leaves", text)
        if cp.size == old_size and cp.root != old_root:
            reject(f"two different roots for the tree of {cp.size} leaves (a fork)", text)
        if cp.size > old_size:
            proof = _public_get(hub_url, "/audit/proof", **{"from": old_size, "size": cp.size}).json()
            try:
                path_hashes = [note.unb64(h, 32) for h in proof.get("path", [])]
            except note.NoteError:
                path_hashes = None
            if (path_hashes is None or proof.get("from") != old_size or proof.get("size") != cp.size
                    or not tree.verify_consistency(old_size, cp.size, old_root, cp.root, path_hashes)):
                reject(f"the consistency proof from {old_size} to {cp.size} does not verify", text)
    state["key"] = pinned
    if previous is None or cp.size != previous["size"]:
        state["checkpoints"].append({"size": cp.size, "root": note.b64(cp.root), "note": text})
    _save_state(path, state)
    _emit({"origin": cp.origin, "size": cp.size, "root": note.b64(cp.root),
           "previous": previous["size"] if previous else None, "consistent": True})
