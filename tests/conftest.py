"""Shared fixtures: settings in a temp folder, a database per backend, a movable clock, the app.

Integration tests that take ``db`` run twice: on SQLite and on PostgreSQL. PostgreSQL is
used when HUB_TEST_DATABASE_URL is set or a server answers on 127.0.0.1:5432; otherwise
those runs are skipped with the reason shown. Each test session gets its own PostgreSQL
database, so parallel runs never see each other's rows.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.clock import FixedClock
import hub.models  # noqa: F401  (every table in the metadata)
from hub.db import make_engine, make_sessionmaker
from hub.migrations import upgrade
from tests.dbreset import empty_postgres
from tests.instance import make_settings

ROOT = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

pytest_plugins = ["tests.factories", "tests.conftest_twilio"]



def _pg_admin_url() -> tuple[str | None, str]:
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    candidate = url or DEFAULT_PG
    try:
        engine = sa.create_engine(candidate.replace("postgresql://", "postgresql+psycopg://", 1),
                                  connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return candidate, ""
    except Exception as exc:  # the reason is shown in the skip message
        why = f"PostgreSQL not reachable at {candidate.split('@')[-1]} ({type(exc).__name__}); " \
              "set HUB_TEST_DATABASE_URL or start the server"
        if url:
            pytest.exit(f"HUB_TEST_DATABASE_URL is set but unusable: {why}", returncode=2)
        return None, why


@pytest.fixture(scope="session")
def pg_url():
    """URL of a fresh PostgreSQL database for this test session (dropped at the end)."""
    admin, why = _pg_admin_url()
    if admin is None:
        pytest.skip(why)
    admin = admin.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"refhub_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False)
    yield url
    with engine.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    engine.dispose()


@pytest.fixture(scope="session")
def _pg_engine(pg_url):
    upgrade(pg_url)  # the schema comes from the migrations, as in production
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        path = tmp_path / "hub.sqlite3"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        empty_postgres(request.getfixturevalue("_pg_engine"))
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.fixture
def settings(tmp_path, database_url):
    """Settings from the project's config.toml, with instance/ and keys/ in a temp folder."""
    return make_settings(tmp_path, database_url)


@pytest.fixture
def engine(settings):
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine):
    """A session factory on the test database (each test starts empty)."""
    return make_sessionmaker(engine)


@pytest.fixture
def app(settings, engine, clock):
    from hub import create_app

    app = create_app(settings, engine=engine, clock=clock)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()

