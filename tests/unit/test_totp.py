"""TOTP and recovery codes as a service: replay, the window of accepted steps, single use."""
import time

import pyotp
import pytest

from extensions import db
from models import RecoveryCode, UserTotp
from services import accounts, gdpr, totp
from services.errors import DomainError
from tests.factories import make_user


def enrolled_user():
    user = make_user("twostep@example.com")
    secret = totp.begin_enrolment(user)
    codes = totp.confirm_enrolment(user, totp.code_now(secret))
    return user, secret, codes


def test_enrolment_needs_a_correct_code_and_gives_ten_distinct_hashed_recovery_codes():
    user = make_user("new@example.com")
    secret = totp.begin_enrolment(user)
    assert len(secret) == 32 and not totp.is_enrolled(user)
    with pytest.raises(DomainError):
        totp.confirm_enrolment(user, "000000" if totp.code_now(secret) != "000000" else "111111")
    codes = totp.confirm_enrolment(user, totp.code_now(secret))
    assert totp.is_enrolled(user)
    assert len(codes) == 10 == len(set(codes))
    stored = [r.code_digest for r in db.session.execute(db.select(RecoveryCode)).scalars()]
    assert len(stored) == 10
    assert all(s.startswith("$argon2id$") for s in stored)
    assert not any(c.replace("-", "") in s for c in codes for s in stored)


def test_a_code_is_accepted_once_and_only_near_now():
    user, secret, _ = enrolled_user()
    row = db.session.get(UserTotp, user.id)
    row.last_step = 0  # forget the enrolment code
    db.session.commit()
    now = time.time()
    assert totp.verify(user, pyotp.TOTP(secret).at(now - 30)) == "totp"  # previous step: clock drift
    assert totp.verify(user, pyotp.TOTP(secret).at(now - 30)) is None  # replay
    assert totp.verify(user, pyotp.TOTP(secret).at(now - 30 * 5)) is None  # too old
    code = totp.code_now(secret)
    assert totp.verify(user, f" {code[:3]} {code[3:]} ") in ("totp", None)  # spaces allowed (may be the used step)


def test_recovery_codes_work_once_each():
    user, _, codes = enrolled_user()
    assert totp.verify(user, codes[0].upper()) == "recovery"  # case and dashes do not matter
    assert totp.verify(user, codes[0]) is None
    assert totp.remaining_recovery_codes(user) == 9
    assert totp.verify(user, "aaaa-bbbb-cccc") is None


def test_password_length_rule_is_15_without_and_8_with_a_second_factor():
    user = make_user("len@example.com")
    assert accounts.min_password_length(user) == 15
    secret = totp.begin_enrolment(user)
    totp.confirm_enrolment(user, totp.code_now(secret))
    assert accounts.min_password_length(user) == 8
    accounts.check_password_policy("pale-moth-9", user.email, user=user)  # 11 characters
    with pytest.raises(DomainError):
        accounts.check_password_policy("short-7", user.email, user=user)


def test_anonymised_number_keeps_the_tail_fits_the_column_and_is_marked():
    value = gdpr.anonymised_number("491701234567", "ab" * 32)
    assert len(value) == 15 and value.endswith("*567") and gdpr.is_anonymised(value)
    assert "491701234" not in value
