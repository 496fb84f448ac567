"""Settings: config.toml, then HUB_* environment, validated once at start-up.

No module reads configuration at import time; `load_settings()` is called by
the faces (create_app, the `hub` command) and the result passed down.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from limits import parse_many  # Flask-Limiter's own parser of limit strings ([security])

from hub.errors import ConfigError

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<days>\d+)D)?(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)

from hub.vocabulary import GATEWAYS, NEEDS, ROLES, TARGETS  # noqa: E402,F401  (the words, defined once)
# The six task forces of the national committee (NCCT), in its order.
TASKFORCES = ("prevention", "rehabilitation", "law_enforcement", "justice", "international_cooperation",
              "child_affairs")
DEFAULT_TASKFORCES: dict[str, dict] = {
    "prevention": {"en": "Prevention", "km": "ការបង្ការ", "needs": []},
    "rehabilitation": {"en": "Rehabilitation, reintegration and repatriation",
                       "km": "ស្តារនីតិសម្បទា សមាហរណកម្ម និងការធ្វើមាតុភូមិនិវត្តន៍",
                       "needs": ["shelter", "medical", "psychosocial", "family_tracing", "repatriation"]},
    "law_enforcement": {"en": "Law enforcement", "km": "ការអនុវត្តច្បាប់", "needs": []},
    "justice": {"en": "Justice", "km": "យុត្តិធម៌", "needs": ["legal"]},
    "international_cooperation": {"en": "International cooperation", "km": "កិច្ចសហប្រតិបត្តិការអន្តរជាតិ",
                                  "needs": ["repatriation", "interpreter"]},
    "child_affairs": {"en": "Child affairs", "km": "កិច្ចការកុមារ", "needs": [], "child": True},
}


# Steps a ladder may have (hub.escalation.models.STEPS_PER_CLOCK: the bits of referral.ladder_fired).
MAX_LADDER_STEPS = 21

def parse_duration(text: Any, *, where: str = "duration") -> dt.timedelta:
    """ISO-8601 duration of days, hours, minutes, seconds (e.g. PT30M, P1D, PT1H30M)."""
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected an ISO-8601 duration string such as \"PT30M\", got {text!r}")
    m = _DURATION.match(text.strip().upper())
    if not m:
        raise ConfigError(
            f"{where}: {text!r} is not an ISO-8601 duration; write it like \"PT30M\", \"PT2H\" or \"P1D\""
        )
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    return dt.timedelta(**parts)


def format_duration(value: dt.timedelta) -> str:
    total = int(value.total_seconds())
    if total == 0:
        return "PT0M"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{seconds}S" if seconds else "")
    return out + ("T" + time if time else "")


@dataclass(frozen=True)
class Step:
    after: dt.timedelta
    notify: str


@dataclass(frozen=True)
class Policy:
    name: str
    ack_within: dt.timedelta
    decide_within: dt.timedelta
    arrive_within: dt.timedelta
    repeat_every: dt.timedelta
    ladder: tuple[Step, ...]

    def to_json(self) -> dict:
        """The frozen form stored with each referral."""
        return {
            "name": self.name,
            "ack_within": format_duration(self.ack_within),
            "decide_within": format_duration(self.decide_within),
            "arrive_within": format_duration(self.arrive_within),
            "repeat_every": format_duration(self.repeat_every),
            "ladder": [{"after": format_duration(s.after), "notify": s.notify} for s in self.ladder],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Policy":
        return _policy(data.get("name", "frozen"), data)


DEFAULT_POLICIES: dict[str, dict] = {
    "urgent": {
        "ack_within": "PT30M",
        "decide_within": "PT2H",
        "arrive_within": "PT24H",
        "repeat_every": "PT1H",
        "ladder": [
            {"after": "PT0M", "notify": "recipient.duty"},
            {"after": "PT30M", "notify": "recipient.all"},
            {"after": "PT1H", "notify": "coordinator.province"},
            {"after": "PT2H", "notify": "coordinator.national"},
        ],
    },
    "normal": {
        "ack_within": "PT4H",
        "decide_within": "P1D",
        "arrive_within": "P2D",
        "repeat_every": "PT4H",
        "ladder": [
            {"after": "PT0M", "notify": "recipient.duty"},
            {"after": "PT4H", "notify": "recipient.all"},
            {"after": "PT8H", "notify": "coordinator.province"},
            {"after": "P1D", "notify": "coordinator.national"},
        ],
    },
}


def _policy(name: str, raw: Mapping[str, Any]) -> Policy:
    where = f"escalation.policies.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    ladder_raw = raw.get("ladder")
    if not isinstance(ladder_raw, list) or not ladder_raw:
        raise ConfigError(f"{where}.ladder must be a non-empty list of {{after, notify}} steps")
    if len(ladder_raw) > MAX_LADDER_STEPS:  # the reports keep each step's firing as a bit (referral.ladder_fired)
        raise ConfigError(f"{where}.ladder has {len(ladder_raw)} steps; at most {MAX_LADDER_STEPS}")
    steps = []
    for i, item in enumerate(ladder_raw):
        if not isinstance(item, Mapping) or set(item) != {"after", "notify"}:
            raise ConfigError(f"{where}.ladder[{i}] must have exactly the keys 'after' and 'notify'")
        if item["notify"] not in TARGETS:
            raise ConfigError(f"{where}.ladder[{i}].notify: {item['notify']!r} is not one of {', '.join(TARGETS)}")
        steps.append(Step(parse_duration(item["after"], where=f"{where}.ladder[{i}].after"), item["notify"]))
    if any(b.after < a.after for a, b in zip(steps, steps[1:])):
        raise ConfigError(f"{where}.ladder: steps must be in order of 'after'")
    durations = {}
    for key in ("ack_within", "decide_within", "arrive_within", "repeat_every"):
        if key not in raw:
            raise ConfigError(f"{where}.{key} is missing")
        durations[key] = parse_duration(raw[key], where=f"{where}.{key}")
        if durations[key] <= dt.timedelta(0):
            raise ConfigError(f"{where}.{key} must be longer than zero")
    return Policy(name=name, ladder=tuple(steps), **durations)


MAX_SMS_CONCURRENCY = 32


@dataclass(frozen=True)
class TaskForce:
    """A task force of the national committee: the referrals that are its own (any of ``needs``, or a
    child where ``child``), for its queue on /board and its figures on /reports."""

    id: str
    names: Mapping[str, str]
    needs: tuple[str, ...]
    child: bool = False


def _taskforces(raw: Any) -> dict[str, TaskForce]:
    """``[taskforces.<id>]`` tables (en, km, needs, child) over the defaults; the six ids only."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("[taskforces] must be a table of [taskforces.<id>] tables")
    unknown = set(raw) - set(TASKFORCES)
    if unknown:
        raise ConfigError(f"taskforces: {', '.join(sorted(unknown))} is not a task force; use "
                          f"{', '.join(TASKFORCES)}")
    out: dict[str, TaskForce] = {}
    for name in TASKFORCES:
        table = {**DEFAULT_TASKFORCES[name], **(raw.get(name) or {})}
        where = f"taskforces.{name}"
        extra = set(table) - {"en", "km", "needs", "child"}
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}; use en, km, needs, child")
        needs = table["needs"]
        if not isinstance(needs, list) or any(n not in NEEDS for n in needs):
            raise ConfigError(f"{where}.needs must be a list of: {', '.join(NEEDS)}")
        if not isinstance(table.get("child", False), bool):
            raise ConfigError(f"{where}.child must be true or false")
        for lang in ("en", "km"):
            if not isinstance(table[lang], str) or not table[lang].strip():
                raise ConfigError(f"{where}.{lang} must be the task force's name in that language")
        out[name] = TaskForce(id=name, names={"en": table["en"], "km": table["km"]}, needs=tuple(needs),
                              child=bool(table.get("child", False)))
    return out


@dataclass(frozen=True)
class SmsSettings:
    gateway: str = "console"
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callbacks: bool = True
    account_sid: str | None = None
    auth_tokens: tuple[str, ...] = ()
    api_base: str | None = None
    # How long one send may wait to connect to the provider, and again for its answer.
    send_timeout: dt.timedelta = dt.timedelta(seconds=10)
    # Sends one drain has in flight at once (each on its own thread and HTTP connection).
    concurrency: int = 4
    # How long a one-tap link works after it was texted (it is also void once its clock stops).
    onetap_lifetime: dt.timedelta = dt.timedelta(days=2)


# --- [security]: sign-in, rate limits, TOTP, idle sessions (issue 18) --------------------------------

DEFAULT_RATE_LIMITS = {
    "login_rate_limit": "20 per minute",          # POST /login and /login/totp, per account and per client address
    "api_rate_limit": "120 per minute",           # /api/v1, per token (per session for a signed-in browser)
    "api_unauthenticated_rate_limit": "30 per minute",  # /api/v1 answers 401, per client address
    "webhook_rate_limit": "600 per minute",       # /webhooks/twilio/..., per client address
    "onetap_rate_limit": "60 per minute",         # /a/<token>, per client address
    "invite_rate_limit": "10 per minute",         # /invite/<token>, per client address
}


@dataclass(frozen=True)
class SecuritySettings:
    session_lifetime: dt.timedelta = dt.timedelta(hours=12)
    session_idle: dt.timedelta = dt.timedelta(minutes=30)
    require_totp_roles: tuple[str, ...] = ("coordinator", "agency_admin", "hub_admin")
    login_rate_limit: str = DEFAULT_RATE_LIMITS["login_rate_limit"]
    api_rate_limit: str = DEFAULT_RATE_LIMITS["api_rate_limit"]
    api_unauthenticated_rate_limit: str = DEFAULT_RATE_LIMITS["api_unauthenticated_rate_limit"]
    webhook_rate_limit: str = DEFAULT_RATE_LIMITS["webhook_rate_limit"]
    onetap_rate_limit: str = DEFAULT_RATE_LIMITS["onetap_rate_limit"]
    invite_rate_limit: str = DEFAULT_RATE_LIMITS["invite_rate_limit"]
    rate_limit_storage: str = "memory://"
    trusted_proxies: int = 0


def _rate_limit(value: Any, where: str) -> str:
    """A Flask-Limiter limit string ("10 per minute", "100/hour;1000/day"), checked with its own parser."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a rate limit such as \"10 per minute\"")
    try:
        parsed = parse_many(value)
    except ValueError:
        parsed = []
    if not parsed:
        raise ConfigError(f"{where}: {value!r} is not a rate limit; write it like \"10 per minute\" or "
                          "\"100/hour;1000/day\"")
    return value.strip()


def _security(raw: Mapping[str, Any]) -> SecuritySettings:
    known = {"session_lifetime", "session_idle", "require_totp_roles", "rate_limit_storage", "trusted_proxies",
             *DEFAULT_RATE_LIMITS}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"security: unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(known))}")
    lifetime = parse_duration(raw.get("session_lifetime", "PT12H"), where="security.session_lifetime")
    idle = parse_duration(raw.get("session_idle", "PT30M"), where="security.session_idle")
    if lifetime <= dt.timedelta(0) or idle <= dt.timedelta(0):
        raise ConfigError("security.session_lifetime and security.session_idle must be longer than zero")
    roles = raw.get("require_totp_roles", list(SecuritySettings.require_totp_roles))
    if not isinstance(roles, list) or any(r not in ROLES for r in roles):
        raise ConfigError(f"security.require_totp_roles must be a list of roles from: {', '.join(ROLES)}")
    storage = raw.get("rate_limit_storage", "memory://")
    if not isinstance(storage, str) or (storage != "database" and "://" not in storage):
        raise ConfigError("security.rate_limit_storage must be \"database\" (the hub's own database) or a "
                          "storage URI such as \"memory://\" or \"redis://localhost:6379\"")
    proxies = raw.get("trusted_proxies", 0)
    if isinstance(proxies, bool) or not isinstance(proxies, int) or not 0 <= proxies <= 5:
        raise ConfigError("security.trusted_proxies must be the number of proxies in front of the hub, 0 to 5")
    limits = {key: _rate_limit(raw.get(key, default), f"security.{key}") for key, default in DEFAULT_RATE_LIMITS.items()}
    return SecuritySettings(session_lifetime=lifetime, session_idle=idle, require_totp_roles=tuple(roles),
                            rate_limit_storage=storage, trusted_proxies=proxies, **limits)


# --- end of [security] ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    config_path: Path
    mode: str
    public_base_url: str
    instance_dir: Path
    database_url: str
    secret_key: str | None  # None: demo mode before `hub init` wrote one
    sms: SmsSettings
    tick: dt.timedelta
    alert_after: dt.timedelta
    policies: Mapping[str, Policy]
    packets_max_bytes: int
    checkpoint_every: dt.timedelta
    session_lifetime: dt.timedelta
    agencies_dir: Path
    keys_dir: Path
    templates_dir: Path
    taskforces: Mapping[str, TaskForce] = field(default_factory=lambda: _taskforces({}))
    extra: Mapping[str, Any] = field(default_factory=dict)
    audit_origin: str = "refhub/127.0.0.1:5000"
    audit_key_secret: str | None = None  # HUB_AUDIT_KEY_SECRET: unwraps keys/hub-audit.keyring.json
    timezone: str = "Asia/Phnom_Penh"  # for what people read; storage stays UTC
    # [retention]: packets of referrals final for longer than this are shredded (`hub retention run`).
    retention_packets_after: dt.timedelta = dt.timedelta(days=730)
    # ... and the webhooks acted on (webhook_seen, the replay guard) are forgotten after this long.
    retention_webhooks_seen_for: dt.timedelta = dt.timedelta(days=30)
    # [metrics]: who may scrape /metrics: these client addresses, or a bearer token (HUB_METRICS_TOKEN).
    metrics_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    metrics_token: str | None = None
    security: SecuritySettings = field(default_factory=SecuritySettings)  # [security]
    # HUB_SECRET_KEY_PREVIOUS: the key before the last rotation, still accepted to open TOTP secrets
    # until `hub totp reseal` has sealed them all under HUB_SECRET_KEY.
    previous_secret_key: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def totp_keys(self) -> tuple[str, ...]:
        """The keys that open a sealed TOTP secret: HUB_SECRET_KEY (which seals), then the previous one."""
        return tuple(k for k in (self.secret_key, self.previous_secret_key) if k)


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{name}] must be a table")
    return value


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def load_settings(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read config.toml, apply HUB_* overrides, validate everything once."""
    env = os.environ if env is None else env
    config_path = Path(path or env.get("HUB_CONFIG", "config.toml")).resolve()
    if not config_path.exists():
        raise ConfigError(f"config file {config_path} not found; pass --config PATH or run from the project folder")
    try:
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML ({exc})") from None
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        data.setdefault(section, {})[name] = value
    base = config_path.parent

    hub = _section(data, "hub")
    mode = env.get("HUB_MODE", hub.get("mode", "demo"))
    if mode not in ("demo", "production"):
        raise ConfigError(f"hub.mode must be \"demo\" or \"production\", not {mode!r}")
    instance_dir = (base / hub.get("instance_dir", "instance")).resolve()
    public_base_url = env.get("HUB_PUBLIC_BASE_URL", hub.get("public_base_url", "http://127.0.0.1:5000")).rstrip("/")
    if not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", public_base_url):
        raise ConfigError(f"hub.public_base_url {public_base_url!r} must be an absolute http(s) URL")
    if mode == "production" and not public_base_url.startswith("https://"):
        raise ConfigError("hub.public_base_url must use https:// in production mode")
    timezone = hub.get("timezone", "Asia/Phnom_Penh")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(timezone if isinstance(timezone, str) and timezone else "-")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"hub.timezone {timezone!r} is not a time zone name such as \"Asia/Phnom_Penh\"") from None

    database = _section(data, "database")
    default_db = f"sqlite:///{instance_dir / 'refhub.sqlite3'}"
    database_url = normalize_database_url(env.get("HUB_DATABASE_URL", database.get("url") or default_db))

    secret_key = env.get("HUB_SECRET_KEY", "")
    if not secret_key:
        if mode == "production":
            raise ConfigError("HUB_SECRET_KEY is not set; production mode needs a long random secret in the environment")
        secret_key = _read_demo_secret(instance_dir)
    elif len(secret_key) < 32:
        raise ConfigError("HUB_SECRET_KEY is too short; use at least 32 random characters")
    previous_secret_key = env.get("HUB_SECRET_KEY_PREVIOUS") or None
    if previous_secret_key is not None and (len(previous_secret_key) < 32 or previous_secret_key == secret_key):
        raise ConfigError("HUB_SECRET_KEY_PREVIOUS must be the key HUB_SECRET_KEY had before (32+ characters, "
                          "not the current one)")

    sms_raw = _section(data, "sms")
    gateway = sms_raw.get("gateway", "console")
    if gateway not in GATEWAYS:
        raise ConfigError(f"sms.gateway {gateway!r} is unknown; use one of {', '.join(GATEWAYS)}")
    tokens = tuple(t.strip() for t in env.get("TWILIO_AUTH_TOKEN", "").split(",") if t.strip())
    send_timeout = parse_duration(sms_raw.get("send_timeout", "PT10S"), where="sms.send_timeout")
    if not dt.timedelta(seconds=1) <= send_timeout <= dt.timedelta(minutes=2):
        raise ConfigError("sms.send_timeout must be between PT1S and PT2M")
    concurrency = sms_raw.get("concurrency", 4)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) \
            or not 1 <= concurrency <= MAX_SMS_CONCURRENCY:
        raise ConfigError(f"sms.concurrency must be a whole number from 1 to {MAX_SMS_CONCURRENCY}")
    sms = SmsSettings(
        gateway=gateway,
        from_number=sms_raw.get("from_number") or None,
        messaging_service_sid=sms_raw.get("messaging_service_sid") or None,
        status_callbacks=bool(sms_raw.get("status_callbacks", True)),
        account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
        auth_tokens=tokens,
        api_base=env.get("HUB_TWILIO_API_BASE") or None,
        send_timeout=send_timeout,
        concurrency=concurrency,
        onetap_lifetime=_onetap_lifetime(sms_raw),
    )
    if gateway == "twilio":
        if not sms.account_sid or not sms.auth_tokens:
            raise ConfigError("sms.gateway is \"twilio\" but TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is not set in the environment")
        if bool(sms.from_number) == bool(sms.messaging_service_sid):
            raise ConfigError("sms: set exactly one of from_number or messaging_service_sid for the twilio gateway")

    esc = _section(data, "escalation")
    policies_raw = dict(DEFAULT_POLICIES)
    policies_raw.update(esc.get("policies", {}) or {})
    policies = {name: _policy(name, raw) for name, raw in policies_raw.items()}
    for required in ("urgent", "normal"):
        if required not in policies:
            raise ConfigError(f"escalation.policies.{required} is required")

    packets = _section(data, "packets")
    max_bytes = packets.get("max_bytes", 20 * 1024 * 1024)
    if not isinstance(max_bytes, int) or max_bytes < 4096:
        raise ConfigError("packets.max_bytes must be an integer of at least 4096")

    audit = _section(data, "audit")
    security = _security(_section(data, "security"))

    origin = audit.get("origin") or "refhub/" + urlsplit(public_base_url).netloc.rpartition("@")[2]
    if not isinstance(origin, str) or not origin.isprintable() or any(c.isspace() or c == "+" for c in origin):
        raise ConfigError(f"audit.origin {origin!r} must be printable text without spaces or '+'")

    paths = _section(data, "paths")
    return Settings(
        config_path=config_path,
        mode=mode,
        public_base_url=public_base_url,
        instance_dir=instance_dir,
        database_url=database_url,
        secret_key=secret_key,
        sms=sms,
        tick=parse_duration(esc.get("tick", "PT5S"), where="escalation.tick"),
        alert_after=parse_duration(esc.get("alert_after", "PT5M"), where="escalation.alert_after"),
        policies=policies,
        packets_max_bytes=max_bytes,
        checkpoint_every=parse_duration(audit.get("checkpoint_every", "PT10M"), where="audit.checkpoint_every"),
        session_lifetime=security.session_lifetime,
        agencies_dir=(base / paths.get("agencies", "agencies")).resolve(),
        keys_dir=(base / paths.get("keys", "keys")).resolve(),
        templates_dir=(base / paths.get("templates", "templates")).resolve(),
        audit_origin=origin,
        audit_key_secret=env.get("HUB_AUDIT_KEY_SECRET") or None,
        taskforces=_taskforces(data.get("taskforces")),
        timezone=timezone,
        retention_packets_after=_retention(_section(data, "retention")),
        retention_webhooks_seen_for=_webhooks_seen_for(_section(data, "retention")),
        metrics_allow=_metrics_allow(_section(data, "metrics")),
        metrics_token=_metrics_token(env),
        security=security,
        previous_secret_key=previous_secret_key,
        extra={k: v for k, v in data.items() if k not in {"hub", "database", "sms", "escalation", "packets", "audit",
                                                          "security", "paths", "taskforces", "retention", "metrics"}},
    )


# -- [sms] onetap_lifetime, [retention], [metrics] ----------------------------------------------------


def _onetap_lifetime(sms_raw: Mapping[str, Any]) -> dt.timedelta:
    value = parse_duration(sms_raw.get("onetap_lifetime", "P2D"), where="sms.onetap_lifetime")
    if not dt.timedelta(hours=1) <= value <= dt.timedelta(days=30):
        raise ConfigError("sms.onetap_lifetime must be between PT1H and P30D")
    return value


def _retention(raw: Mapping[str, Any]) -> dt.timedelta:
    unknown = set(raw) - {"packets_after", "webhooks_seen_for"}
    if unknown:
        raise ConfigError(f"retention: unknown key(s) {', '.join(sorted(unknown))}; use packets_after, "
                          "webhooks_seen_for")
    text = raw.get("packets_after", "P2Y")
    years = re.match(r"^P(\d+)Y$", text.strip().upper()) if isinstance(text, str) else None
    # Whole years are read as 365 days each (P2Y = P730D): retention counts days, not calendars.
    value = (dt.timedelta(days=365 * int(years.group(1))) if years
             else parse_duration(text, where="retention.packets_after"))
    if value < dt.timedelta(days=1):
        raise ConfigError("retention.packets_after must be at least P1D")
    return value


def _webhooks_seen_for(raw: Mapping[str, Any]) -> dt.timedelta:
    value = parse_duration(raw.get("webhooks_seen_for", "P30D"), where="retention.webhooks_seen_for")
    if value < dt.timedelta(days=1):
        raise ConfigError("retention.webhooks_seen_for must be at least P1D (Twilio retries a webhook within "
                          "minutes; a replay inside this window changes nothing)")
    return value


def _metrics_allow(raw: Mapping[str, Any]) -> tuple[str, ...]:
    unknown = set(raw) - {"allow"}
    if unknown:
        raise ConfigError(f"metrics: unknown key(s) {', '.join(sorted(unknown))}; use allow")
    allow = raw.get("allow", ["127.0.0.1", "::1"])
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise ConfigError("metrics.allow must be a list of addresses or networks, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"]")
    for item in allow:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"metrics.allow: {item!r} is not an IP address or network such as \"10.0.0.0/8\"") from None
    return tuple(allow)


def _metrics_token(env: Mapping[str, str]) -> str | None:
    token = env.get("HUB_METRICS_TOKEN") or None
    if token is not None and len(token) < 24:
        raise ConfigError("HUB_METRICS_TOKEN is too short; use at least 24 random characters")
    return token


DEMO_SECRET_FILE = "secret_key"


def _read_demo_secret(instance_dir: Path) -> str | None:
    """The demo's secret, kept in instance/ by `hub init` so restarts keep sessions; None before that."""
    path = instance_dir / DEMO_SECRET_FILE
    return path.read_text().strip() if path.exists() else None


def ensure_demo_secret(settings: "Settings") -> Path | None:
    """Write the demo's secret key into instance/ if it has none yet (`hub init` only); its path if written."""
    if settings.secret_key is not None:
        return None
    path = settings.instance_dir / DEMO_SECRET_FILE
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    object.__setattr__(settings, "secret_key", secret)  # Settings is frozen for everyone but `hub init`
    return path


# -- the hub's files are its own user's only ----------------------------------------------------------

PRIVATE_UMASK = 0o077


def lock_down_files(settings: "Settings") -> None:
    """Make what the hub wrote readable by its own user only: ``instance/`` and ``keys/`` 0700, every
    file in them 0600 (database and its -wal/-shm, demo secrets, key bundles, wrapped and audit keys),
    and a SQLite database kept elsewhere. New files get the same from the process umask
    (:data:`PRIVATE_UMASK`, set by the `hub` command and wsgi.py); this mends what an older hub, or a
    copy, left open."""
    folders = [settings.instance_dir, settings.keys_dir]
    if settings.is_sqlite:
        database = Path(settings.database_url.split("///", 1)[-1])
        files = [database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    else:
        files = []
    for folder in folders:
        if folder.is_dir():
            os.chmod(folder, 0o700)
            for path in folder.rglob("*"):
                if not path.is_symlink():
                    os.chmod(path, 0o700 if path.is_dir() else 0o600)
    for path in files:
        if path.is_file():
            os.chmod(path, 0o600)
