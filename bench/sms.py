"""Messages per second into the local Twilio-compatible server: hub gateway vs the raw SDK.

    .venv/bin/python -m bench.sms [--messages 1000] [--rounds 3] [--variant NAME ...]

Every variant sends into the same FakeTwilio in the same run, rounds
interleaved, and each must leave exactly ``--messages`` new messages on the
server. The table reports the median rate of each variant and its ratio to
the raw SDK (``client.messages.create`` in a loop).

A variant is a function ``(server, n) -> run``: it does its setup untimed
(build clients, enqueue n messages in an outbox, ...) and returns the
function that is timed. ``drain`` is the outbox: n messages queued in a
SQLite outbox beforehand, then ``hub.notify.service.drain`` until nothing is due
(claim, send with a status callback URL, record each result in its own commit).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from twilio.rest import Client

from hub.notify.gateways import ApiBaseHttpClient, TwilioGateway
from tests.fake_twilio import FakeTwilio

Run = Callable[[], None]
Variant = Callable[[FakeTwilio, int], Run]

TO = "+85512345678"
BODY = "R-7F3K: new URGENT referral from pp-shelter-north (refhub). Please acknowledge: https://hub.example.org/a/" + "T" * 43
CALLBACK = "https://hub.example.org/webhooks/twilio/status/0123456789abcdef"


def raw_sdk(server: FakeTwilio, n: int) -> Run:
    """The twilio SDK alone, pointed at the server through the same HTTP client class."""
    client = Client(server.account_sid, server.auth_tokens[0], http_client=ApiBaseHttpClient(server.base_url))

    def run() -> None:
        for _ in range(n):
            client.messages.create(to=TO, from_=server.phone_number, body=BODY, status_callback=CALLBACK)

    return run


def gateway_send(server: FakeTwilio, n: int) -> Run:
    """hub.notify.gateways.TwilioGateway.send in a loop."""
    gateway = TwilioGateway(
        server.account_sid, server.auth_tokens, from_number=server.phone_number, api_base=server.base_url
    )

    def run() -> None:
        for _ in range(n):
            gateway.send(to=TO, body=BODY, status_callback=CALLBACK)

    return run


def outbox_drain(server: FakeTwilio, n: int) -> Run:
    """hub.notify.service.drain: n messages queued in the outbox (SQLite file, untimed), drained into the server.

    Timed: claiming in batches of 100, the gateway call per message with its
    status callback URL, and one committed transaction per result.
    """
    import datetime as dt
    import tempfile
    from pathlib import Path
    from types import SimpleNamespace

    from hub.db import make_engine, make_sessionmaker
    from hub.models import create_all
    from hub.notify.service import drain, enqueue

    folder = tempfile.mkdtemp(prefix="bench-sms-")
    engine = make_engine(f"sqlite:///{Path(folder) / 'hub.sqlite3'}")
    create_all(engine)
    sessions = make_sessionmaker(engine)
    root = Path(__file__).resolve().parent.parent
    settings = SimpleNamespace(templates_dir=root / "templates", public_base_url="https://hub.example.org",
                               sms=SimpleNamespace(status_callbacks=True))
    now = dt.datetime.now(dt.timezone.utc)
    with sessions() as session, session.begin():
        for i in range(n):
            enqueue(session, dedupe_key=f"bench:{i}", to_phone=TO, lang="en", template="new_referral",
                    values={"code": "R-7F3K", "sender": "pp-shelter-north", "urgency": "urgent",
                            "action": "acknowledge", "link": "https://hub.example.org/a/" + "T" * 43},
                    now=now, settings=settings)
    gateway = TwilioGateway(
        server.account_sid, server.auth_tokens, from_number=server.phone_number, api_base=server.base_url
    )

    def run() -> None:
        try:
            while drain(sessions, gateway, now, settings=settings):
                pass
        finally:
            engine.dispose()

    return run


BASELINE = "sdk"
VARIANTS: dict[str, Variant] = {"sdk": raw_sdk, "gateway": gateway_send, "drain": outbox_drain}


def measure(server: FakeTwilio, variant: Variant, n: int) -> float:
    """Seconds to put ``n`` messages on the server (setup untimed); checks they all arrived."""
    run = variant(server, n)
    before = len(server.messages)
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    arrived = len(server.messages) - before
    if arrived != n:
        raise SystemExit(f"variant sent {arrived} messages instead of {n}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sms", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                        help="variants to run (default: all); the baseline always runs")
    args = parser.parse_args(argv)
    names = [BASELINE] + [v for v in (args.variant or VARIANTS) if v != BASELINE]

    times: dict[str, list[float]] = {name: [] for name in names}
    with FakeTwilio() as server:
        for name in names:  # warm up connections and imports
            measure(server, VARIANTS[name], 20)
        for _ in range(args.rounds):
            for name in names:
                times[name].append(measure(server, VARIANTS[name], args.messages))
                server.clear()

    rates = {name: args.messages / statistics.median(values) for name, values in times.items()}
    print(f"SMS into the local fake Twilio: {args.messages} messages x {args.rounds} rounds, median\n")
    print("| variant | messages | median s | msg/s | ratio to raw SDK |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {args.messages} | {statistics.median(times[name]):.3f} | "
              f"{rates[name]:.0f} | {rates[name] / rates[BASELINE]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
