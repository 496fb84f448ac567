"""Password hashes (Argon2id PHC strings) and recovery codes."""
from __future__ import annotations

import pytest

from hub.accounts import passwords
from hub.directory.service import canonical_recovery_code, new_recovery_code
from hub.errors import BadInput

FAST = {"iterations": 1, "memory_kib": 1024, "lanes": 1}


def test_a_hash_is_a_phc_string_that_verifies_its_password_only():
    encoded = passwords.hash_password("correct horse battery", params=FAST)
    assert encoded.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert passwords.verify_password("correct horse battery", encoded)
    assert not passwords.verify_password("correct horse batterY", encoded)
    assert passwords.hash_password("correct horse battery", params=FAST) != encoded  # salted


def test_production_defaults_are_protocol_parameters():
    assert passwords.DEFAULT_PARAMS == {"iterations": 3, "memory_kib": 65536, "lanes": 4}


@pytest.mark.parametrize("encoded", [None, "", "plain", "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
                                     "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43])
def test_malformed_or_abusive_hashes_never_match(encoded):
    assert not passwords.verify_password("anything", encoded)


def test_recovery_codes_are_grouped_and_forgive_case_spaces_and_lookalikes():
    code = new_recovery_code()
    groups = code.split("-")
    assert len(groups) == 7 and all(len(g) == 4 for g in groups)
    canonical = code.replace("-", "")
    assert canonical_recovery_code(code.lower()) == canonical
    assert canonical_recovery_code(" ".join(groups)) == canonical
    assert canonical_recovery_code(code.replace("O", "0").replace("I", "1")) == canonical
    assert new_recovery_code() != code


def test_a_recovery_code_with_a_typo_is_caught_before_any_key_derivation():
    code = new_recovery_code()
    last = code[-1]
    with pytest.raises(BadInput, match="typo"):
        canonical_recovery_code(code[:-1] + ("A" if last != "A" else "B"))
    with pytest.raises(BadInput):
        canonical_recovery_code(code[:-5])
