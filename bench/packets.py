"""Seal and open throughput of refhub/v1 packets, beside the protocol's floor.

    .venv/bin/python -m bench.packets [--json PATH] [--quick]

The floor is the protocol's unavoidable primitives called back to back on
the same bytes, with keys already loaded:
  seal: SHA-256(B), Ed25519 sign, isig + B, HPKE encrypt, SHA-256(ct),
        Ed25519 sign, pybase64 urlsafe encode of ct
  open: pybase64 decode of ct, SHA-256(ct), Ed25519 verify, HPKE decrypt,
        SHA-256(B), Ed25519 verify
"raw suite" is the HPKE encrypt (or decrypt) alone. Ratios are time ratios:
1.00 means as fast as the floor.

--malloc tuned (or both) also measures with glibc told to keep freed memory
(M_MMAP_THRESHOLD and M_TRIM_THRESHOLD raised, as MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ do). On virtual machines where a page fault is
expensive, every fresh multi-megabyte buffer costs milliseconds; the
implementation therefore writes big base64 values straight into their final
buffer, and the tuned pass shows the work without the faults.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import os
import statistics
import sys
import time
import uuid

import pybase64

from hub.packets import MemorySeenPacketIds, generate_keyring, open_packet, parse_packet, seal
from hub.packets.wire import INFO_CONTEXT, INNER_CONTEXT, OUTER_CONTEXT, SUITE

SIZES = [("1 KB", 1024), ("100 KB", 100 * 1024), ("5 MB", 5 * 1024 * 1024)]
TARGET = 1.3


def _median_seconds(fn, budget: float, min_runs: int = 5, max_runs: int = 2000) -> float:
    """Median of repeated runs within a time budget (after one warm-up)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _interleaved(fns: dict, budget: float, rounds: int = 5) -> dict:
    """Run each candidate in turns so that machine noise hits all of them alike."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(_median_seconds(fn, budget / rounds))
    return {name: min(vals) for name, vals in samples.items()}


def measure(budget_per_case: float) -> list[dict]:
    sender, sender_bundle = generate_keyring("pp-ahtjp")
    reader, reader_bundle = generate_keyring("pp-shelter-a")
    sign = sender.signing_key().signer
    verify = sender_bundle.find(sender.signing_key().kid).verifier
    seal_pub = reader_bundle.current_seal_key().hpke_public
    seal_priv = reader.find(reader_bundle.current_seal_key().kid).hpke_private
    # The floor works on a header of the real size.
    header = parse_packet(seal(b"{}", sender=sender, recipient=reader_bundle, referral_id=str(uuid.uuid4()))).header.raw
    info = INFO_CONTEXT + header
    rows = []
    for label, size in SIZES:
        body = os.urandom(size)
        referral_id = str(uuid.uuid4())

        def ours_seal():
            return seal(body, sender=sender, recipient=reader_bundle, referral_id=referral_id)

        def floor_seal():
            isig = sign.sign(INNER_CONTEXT + header + hashlib.sha256(body).digest())
            ct = SUITE.encrypt(isig + body, seal_pub, info=info)
            sig = sign.sign(OUTER_CONTEXT + header + hashlib.sha256(ct).digest())
            return pybase64.urlsafe_b64encode(ct), sig

        inner = b"\0" * 64 + body

        def raw_encrypt():
            return SUITE.encrypt(inner, seal_pub, info=info)

        wire = ours_seal()
        ct = SUITE.encrypt(sign.sign(INNER_CONTEXT + header + hashlib.sha256(body).digest()) + body, seal_pub, info=info)
        ct_b64 = pybase64.urlsafe_b64encode(ct)
        outer = sign.sign(OUTER_CONTEXT + header + hashlib.sha256(ct).digest())

        def ours_open():
            return open_packet(wire, reader=reader, sender=sender_bundle, seen=MemorySeenPacketIds())

        def floor_open():
            c = pybase64.b64decode(ct_b64, altchars=b"-_", validate=True)
            verify.verify(outer, OUTER_CONTEXT + header + hashlib.sha256(c).digest())
            plain = SUITE.decrypt(c, seal_priv, info=info)
            view = memoryview(plain)
            verify.verify(plain[:64], INNER_CONTEXT + header + hashlib.sha256(view[64:]).digest())
            return plain

        def raw_decrypt():
            return SUITE.decrypt(ct, seal_priv, info=info)

        t = _interleaved(
            {"seal": ours_seal, "seal_floor": floor_seal, "seal_raw": raw_encrypt,
             "open": ours_open, "open_floor": floor_open, "open_raw": raw_decrypt},
            budget_per_case,
        )
        for op in ("seal", "open"):
            rows.append({
                "size": label, "bytes": size, "op": op,
                "ours_s": t[op], "floor_s": t[f"{op}_floor"], "raw_s": t[f"{op}_raw"],
                "ours_ops": 1 / t[op], "floor_ops": 1 / t[f"{op}_floor"], "raw_ops": 1 / t[f"{op}_raw"],
                "ratio_floor": t[op] / t[f"{op}_floor"], "ratio_raw": t[op] / t[f"{op}_raw"],
                "floor_over_raw": t[f"{op}_floor"] / t[f"{op}_raw"],
            })
    return rows


def tune_malloc() -> bool:
    """Ask glibc to keep freed memory mapped (process-wide; for this benchmark only)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    size = 256 * 1024 * 1024
    return bool(mallopt(m_trim_threshold, size)) and bool(mallopt(m_mmap_threshold, size))


def table(rows: list[dict]) -> str:
    lines = [
        "| body | op | ours ops/s | floor ops/s | raw suite ops/s | ours/floor (time) | ours/raw (time) | floor/raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        flag = "" if r["ratio_floor"] <= TARGET else " (over target)"
        lines.append(
            f"| {r['size']} | {r['op']} | {r['ours_ops']:,.0f} | {r['floor_ops']:,.0f} | {r['raw_ops']:,.0f} "
            f"| {r['ratio_floor']:.2f}{flag} | {r['ratio_raw']:.2f} | {r['floor_over_raw']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.packets", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="also write the measurements as JSON")
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--malloc", choices=["default", "tuned", "both"], default="default",
                        help="which malloc settings to measure (default: as it comes; both: that, then tuned)")
    args = parser.parse_args(argv)
    budget = 0.5 if args.quick else 2.0
    started = time.perf_counter()
    results = {}
    passes = ["default", "tuned"] if args.malloc == "both" else [args.malloc]
    for mode in passes:
        if mode == "tuned" and not tune_malloc():
            print("(malloc tuning is not available here; skipped)")
            continue
        title = "glibc malloc as it comes" if mode == "default" else "malloc keeping freed memory"
        rows = measure(budget)
        results[mode] = rows
        print(f"### {title}\n")
        print(table(rows))
        print()
    print(f"target: ours/floor <= {TARGET}; {time.perf_counter() - started:.0f} s; "
          f"python {sys.version.split()[0]}, pybase64 {pybase64.get_version()}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"target": TARGET, "passes": results}, f, indent=2)


if __name__ == "__main__":
    main()
