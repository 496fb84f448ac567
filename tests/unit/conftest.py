"""Key rings shared by the packet tests: a police unit and a shelter, made once per module."""
from __future__ import annotations

import pytest

from hub.packets import generate_keyring

NOW = "2026-11-22T10:00:00Z"


@pytest.fixture(scope="module")
def police():
    return generate_keyring("pp-ahtjp", created_at=NOW)


@pytest.fixture(scope="module")
def shelter():
    return generate_keyring("pp-shelter-a", created_at=NOW)
