"""The password policy (issue 17, finding 8): 12 characters or more, and not one a guesser tries early."""

import pytest

from app.domain.passwords import name_words, password_problem


@pytest.mark.parametrize("weak", ["password", "12345678", "password1234", "qwertyuiopas", "aaaaaaaaaaaa"])
def test_short_common_and_patterned_passwords_are_refused(weak):
    assert password_problem(weak) is not None


def test_the_length_rule_names_the_minimum():
    assert password_problem("Zq9!vT2#") == "at least 12 characters"


def test_a_password_built_on_the_users_own_name_is_refused():
    assert password_problem("drsmith2026!!", name_words("dr.smith", "Dr Jane Smith")) is not None


@pytest.mark.parametrize("strong", ["Velvet-harbour-lantern-2291", "correct horse battery staple ward 7"])
def test_long_uncommon_passphrases_are_accepted(strong):
    assert password_problem(strong, name_words("dr.smith")) is None
