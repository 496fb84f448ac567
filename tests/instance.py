"""A fresh hub instance for tests and benchmarks: the project's config.toml with its folders moved.

``write_config(folder, **overrides)`` writes ``folder/config.toml``: instance/ and keys/ inside
``folder``, agencies/ and templates/ the project's (unless overridden), then any setting
given as ``section__key=value`` (``escalation__tick="PT1S"``). ``make_settings`` loads it.
One helper, so no test edits config.toml's text with string replacements.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

import tomli_w

from hub.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def write_config(folder: Path, **overrides: Any) -> Path:
    data = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
    data["hub"]["instance_dir"] = str(folder / "instance")
    data["paths"].update(agencies=str(ROOT / "agencies"), keys=str(folder / "keys"),
                         templates=str(ROOT / "templates"))
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        target = data.setdefault(section, {})
        target[name] = str(value) if isinstance(value, Path) else value
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def make_settings(folder: Path, database_url: str, env: Mapping[str, str] | None = None, **overrides: Any
                  ) -> Settings:
    """Settings of a fresh instance in ``folder`` on ``database_url`` (a test secret key unless ``env`` says)."""
    config = write_config(folder, **overrides)
    return load_settings(config, env={"HUB_DATABASE_URL": database_url, "HUB_SECRET_KEY": "t" * 48, **(env or {})})


# Rate limits out of the way, for a test that asks something else of many requests from one address
# (the limits have their own tests: tests/integration/test_signin_security.py).
GENEROUS_LIMITS = {f"security__{name}": "100000 per minute" for name in (
    "login_rate_limit", "api_rate_limit", "api_unauthenticated_rate_limit", "webhook_rate_limit",
    "onetap_rate_limit", "invite_rate_limit")}


def new_postgres_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A new, empty PostgreSQL database (no schema: `hub init` makes it) and a function that drops it."""
    import uuid

    import sqlalchemy as sa

    name = f"refhub_proc_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return url, drop
