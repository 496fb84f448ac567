"""config.toml plus HUB_* environment: validated once, with errors that say what to fix."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hub.config import ensure_demo_secret, load_settings, parse_duration
from hub.errors import ConfigError
from tests.instance import write_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = {"HUB_SECRET_KEY": "s" * 40}


def _config(tmp_path: Path, replace: dict[str, str] | None = None, append: str = "") -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace('instance_dir = "instance"', f'instance_dir = "{tmp_path / "instance"}"')
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "config.toml"
    path.write_text(text + append, encoding="utf-8")
    return path


def test_the_shipped_config_loads(tmp_path):
    settings = load_settings(_config(tmp_path), env=SECRET)
    assert settings.mode == "demo" and settings.sms.gateway == "console"
    assert settings.policies["urgent"].ack_within == dt.timedelta(minutes=30)
    assert settings.session_lifetime == dt.timedelta(hours=12)
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("refhub.sqlite3")


def test_environment_overrides_the_file(tmp_path):
    settings = load_settings(_config(tmp_path), env={**SECRET, "HUB_DATABASE_URL": "postgresql://u@db/hub",
                                                     "HUB_PUBLIC_BASE_URL": "https://hub.example.org/"})
    assert settings.database_url == "postgresql+psycopg://u@db/hub"
    assert settings.public_base_url == "https://hub.example.org"


@pytest.mark.parametrize("text,expected", [("PT30M", dt.timedelta(minutes=30)), ("P1D", dt.timedelta(days=1)),
                                           ("PT1H30M", dt.timedelta(minutes=90)), ("PT0M", dt.timedelta(0))])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["30 minutes", "PT", "P", "PT30", "1800", "PT-5M"])
def test_a_bad_duration_names_the_setting(tmp_path, bad):
    path = _config(tmp_path, {'session_lifetime = "PT12H"': f'session_lifetime = "{bad}"'})
    with pytest.raises(ConfigError, match=r"security\.session_lifetime.*PT30M"):
        load_settings(path, env=SECRET)


def test_a_bad_duration_in_a_ladder_names_the_step(tmp_path):
    path = _config(tmp_path, {'{after = "PT30M", notify = "recipient.all"}': '{after = "half an hour", notify = "recipient.all"}'})
    with pytest.raises(ConfigError, match=r"escalation\.policies\.urgent\.ladder\[1\]\.after"):
        load_settings(path, env=SECRET)


def test_an_unknown_gateway_is_refused(tmp_path):
    path = _config(tmp_path, {'gateway = "console"': 'gateway = "carrier-pigeon"'})
    with pytest.raises(ConfigError, match=r"sms\.gateway 'carrier-pigeon' is unknown; use one of console, twilio"):
        load_settings(path, env=SECRET)


def test_production_without_a_secret_key_is_refused(tmp_path):
    path = _config(tmp_path, {'mode = "demo"': 'mode = "production"',
                              'public_base_url = "http://127.0.0.1:5000"': 'public_base_url = "https://hub.example.org"'})
    with pytest.raises(ConfigError, match="HUB_SECRET_KEY is not set"):
        load_settings(path, env={})
    assert not (tmp_path / "instance" / "secret_key").exists(), "production never invents a secret"
    assert load_settings(path, env=SECRET).secret_key == SECRET["HUB_SECRET_KEY"]


def test_demo_mode_reads_the_secret_hub_init_wrote(tmp_path):
    path = _config(tmp_path)
    first = load_settings(path, env={})
    assert first.secret_key is None, "loading settings writes nothing"
    assert not (tmp_path / "instance" / "secret_key").exists()
    written = ensure_demo_secret(first)
    assert written == tmp_path / "instance" / "secret_key" and oct(written.stat().st_mode & 0o777) == "0o600"
    again = load_settings(path, env={})
    assert len(again.secret_key) >= 32 and again.secret_key == first.secret_key
    assert ensure_demo_secret(again) is None


def test_production_needs_https(tmp_path):
    path = _config(tmp_path, {'mode = "demo"': 'mode = "production"'})
    with pytest.raises(ConfigError, match="https"):
        load_settings(path, env=SECRET)


def test_twilio_without_credentials_is_refused(tmp_path):
    path = _config(tmp_path, {'gateway = "console"': 'gateway = "twilio"', 'from_number = ""': 'from_number = "+15005550006"'})
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN"):
        load_settings(path, env=SECRET)
    settings = load_settings(path, env={**SECRET, "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                                        "TWILIO_AUTH_TOKEN": "new-token, old-token"})
    assert settings.sms.auth_tokens == ("new-token", "old-token")


def test_a_ladder_target_that_does_not_exist_is_refused(tmp_path):
    path = _config(tmp_path, {'notify = "coordinator.national"}': 'notify = "coordinator.regional"}'})
    with pytest.raises(ConfigError, match=r"'coordinator\.regional' is not one of .*coordinator\.national"):
        load_settings(path, env=SECRET)


def test_a_short_secret_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="too short"):
        load_settings(_config(tmp_path), env={"HUB_SECRET_KEY": "short"})


def test_a_missing_config_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(ConfigError, match="--config PATH"):
        load_settings(tmp_path / "nope.toml", env=SECRET)


def test_broken_toml_is_reported(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[hub\nmode = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, env=SECRET)


def test_the_sms_send_timeout_and_concurrency_are_read(tmp_path):
    settings = load_settings(_config(tmp_path, {'send_timeout = "PT10S"': 'send_timeout = "PT3S"',
                                                "concurrency = 4 ": "concurrency = 7 "}), env=SECRET)
    assert (settings.sms.send_timeout, settings.sms.concurrency) == (dt.timedelta(seconds=3), 7)


@pytest.mark.parametrize("line,setting", [('send_timeout = "PT0S"', "send_timeout"),
                                          ('send_timeout = "PT1H"', "send_timeout"),
                                          ('send_timeout = "ten seconds"', "send_timeout"),
                                          ("concurrency = 0 ", "concurrency"), ("concurrency = 33 ", "concurrency"),
                                          ('concurrency = "4" ', "concurrency"), ("concurrency = true ", "concurrency")])
def test_a_bad_sms_send_setting_is_refused(tmp_path, line, setting):
    old = 'send_timeout = "PT10S"' if setting == "send_timeout" else "concurrency = 4 "
    with pytest.raises(ConfigError, match=rf"sms\.{setting}"):
        load_settings(_config(tmp_path, {old: line}), env=SECRET)


def test_the_six_task_forces_map_needs_and_children(tmp_path):
    forces = load_settings(_config(tmp_path), env=SECRET).taskforces
    assert list(forces) == ["prevention", "rehabilitation", "law_enforcement", "justice",
                            "international_cooperation", "child_affairs"]
    assert forces["justice"].needs == ("legal",) and forces["child_affairs"].child
    assert "repatriation" in forces["international_cooperation"].needs
    assert all(f.names["en"] and f.names["km"] for f in forces.values())


@pytest.mark.parametrize("replace,message", [
    ({"[taskforces.justice]": "[taskforces.navy]"}, r"navy is not a task force"),
    ({'needs = ["legal"]': 'needs = ["boats"]'}, r"taskforces\.justice\.needs must be a list of: shelter"),
    ({"needs = []\nchild = true": "needs = []\nchild = \"yes\""}, r"taskforces\.child_affairs\.child must be true or false"),
])
def test_a_bad_task_force_names_the_setting(tmp_path, replace, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(_config(tmp_path, replace), env=SECRET)


@pytest.mark.parametrize("key,bad", [("login_rate_limit", "ten a minute"), ("api_rate_limit", ""),
                                     ("webhook_rate_limit", 5), ("onetap_rate_limit", "10 per fortnight")])
def test_a_bad_rate_limit_is_a_clear_start_up_error(tmp_path, key, bad):
    path = write_config(tmp_path, **{f"security__{key}": bad})
    with pytest.raises(ConfigError, match=rf"security\.{key}.*10 per minute"):
        load_settings(path, env={"HUB_SECRET_KEY": "s" * 40})


def test_security_settings_and_their_defaults(tmp_path):
    settings = load_settings(write_config(tmp_path), env={"HUB_SECRET_KEY": "s" * 40})
    assert settings.security.session_idle == dt.timedelta(minutes=30)
    assert settings.security.require_totp_roles == ("coordinator", "agency_admin", "hub_admin")
    assert settings.security.rate_limit_storage == "memory://" and settings.security.trusted_proxies == 0
    shared = load_settings(write_config(tmp_path, security__rate_limit_storage="database"), env={"HUB_SECRET_KEY": "s" * 40})
    assert shared.security.rate_limit_storage == "database"
    for bad in ({"security__require_totp_roles": ["admin"]}, {"security__trusted_proxies": -1},
                {"security__rate_limit_storage": "memory"}, {"security__lockout_after": 5}):
        with pytest.raises(ConfigError, match=r"security"):
            load_settings(write_config(tmp_path, **bad), env={"HUB_SECRET_KEY": "s" * 40})


def test_webhooks_seen_for_defaults_to_thirty_days_and_refuses_less_than_a_day(tmp_path):
    settings = load_settings(write_config(tmp_path), env={"HUB_SECRET_KEY": "s" * 40})
    assert settings.retention_webhooks_seen_for == dt.timedelta(days=30)
    longer = load_settings(write_config(tmp_path, retention__webhooks_seen_for="P90D"), env={"HUB_SECRET_KEY": "s" * 40})
    assert longer.retention_webhooks_seen_for == dt.timedelta(days=90)
    with pytest.raises(ConfigError, match=r"retention\.webhooks_seen_for must be at least P1D"):
        load_settings(write_config(tmp_path, retention__webhooks_seen_for="PT1H"), env={"HUB_SECRET_KEY": "s" * 40})


def test_a_previous_secret_key_is_read_and_checked(tmp_path):
    env = {"HUB_SECRET_KEY": "s" * 40, "HUB_SECRET_KEY_PREVIOUS": "p" * 40}
    settings = load_settings(write_config(tmp_path), env=env)
    assert settings.totp_keys == ("s" * 40, "p" * 40)
    for bad in ("short", "s" * 40):
        with pytest.raises(ConfigError, match="HUB_SECRET_KEY_PREVIOUS"):
            load_settings(write_config(tmp_path), env={**env, "HUB_SECRET_KEY_PREVIOUS": bad})
