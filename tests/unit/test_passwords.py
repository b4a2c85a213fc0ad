"""The password policy (NIST 800-63B rev. 4: length only, a common-password list, no
composition rules) and argon2id hashing, tested on services/passwords.py directly."""
import gzip

import pytest

from services import passwords

GOOD = "correct horse battery staple"


def _long_common_entry():
    """An entry of the shipped list that is long enough to pass the length rule."""
    with gzip.open(passwords._COMMON_PATH, "rt", encoding="utf-8") as fh:
        for line in fh:
            word = line.strip()
            if 15 <= len(word) <= 128 and word.isascii() and word.isalnum():
                return word
    pytest.fail("the shipped common-password list has no ASCII entry of 15+ characters")


def test_length_bounds_are_15_to_128():
    for length, ok in ((14, False), (15, True), (128, True), (129, False)):
        password = ("unrelated words " * 10)[:length]
        assert len(password) == length

        errors = passwords.policy_errors(password)

        assert (errors == []) is ok, (length, errors)


def test_too_short_message_says_how_many_characters_were_typed():
    errors = passwords.policy_errors("abcdefghijklmn")

    assert len(errors) == 1
    assert "at least 15 characters" in errors[0]
    assert "you typed 14" in errors[0]


def test_too_long_message_names_the_limit():
    errors = passwords.policy_errors("x" * 129 + "y")

    assert errors == ["Use at most 128 characters."]


def test_min_length_is_configurable_for_second_factor_accounts():
    assert passwords.policy_errors("sevenxyz", min_length=8) == []
    assert "at least 8 characters" in passwords.policy_errors("sevenxy", min_length=8)[0]


def test_a_long_entry_of_the_common_list_is_refused_in_any_case():
    common = _long_common_entry()

    errors = passwords.policy_errors(common.upper())

    assert errors == ["This password is on the list of commonly used passwords; choose another."]


def test_short_common_password_gets_both_messages():
    errors = passwords.policy_errors("password", min_length=8)

    assert any("commonly used" in e for e in errors)


def test_email_or_its_local_part_is_refused():
    for candidate in ("operator.account@example.com", "OPERATOR.ACCOUNT@EXAMPLE.COM", "operator.account"):
        errors = passwords.policy_errors(candidate, email="operator.account@example.com")

        assert "Do not use your e-mail address as your password." in errors, candidate


def test_no_composition_rules():
    # Lowercase letters and spaces only: acceptable, because length is what counts.
    assert passwords.policy_errors("purple tractor melody") == []


def test_hash_is_argon2id_and_salted():
    first, second = passwords.hash_password(GOOD), passwords.hash_password(GOOD)

    assert first.startswith("$argon2id$")
    assert first != second
    assert GOOD not in first


def test_verify_accepts_the_password_and_refuses_others():
    stored = passwords.hash_password(GOOD)

    assert passwords.verify_password(stored, GOOD) is True
    assert passwords.verify_password(stored, GOOD + " ") is False
    assert passwords.verify_password(stored, "") is False


def test_verify_without_a_usable_hash_fails():
    # None is what sign-in passes for an unknown e-mail (still one argon2 verification, against a
    # dummy hash whose password must not let anybody in).
    for stored in (None, "", "not-a-hash", "$argon2id$v=19$broken"):
        assert passwords.verify_password(stored, "message-center-timing-equaliser") is False, stored
        assert passwords.verify_password(stored, GOOD) is False, stored


def test_needs_rehash_only_for_weaker_parameters():
    from argon2 import PasswordHasher

    assert passwords.needs_rehash(passwords.hash_password(GOOD)) is False
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(GOOD)
    assert passwords.needs_rehash(weak) is True
