"""A fresh hub instance for tests and benchmarks: the project's config.toml with its folders moved.

``write_config(folder, **overrides)`` writes ``folder/config.toml``: instance/ and keys/ inside
``folder``, agencies/ and templates/ the project's (unless overridden), then any setting
given as ``section__key=value`` (``escalation__tick="PT1S"``). ``make_settings`` loads it.
One helper, so no test edits config.toml's text with string replacements.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Mapping

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
