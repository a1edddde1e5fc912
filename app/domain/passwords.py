"""The password policy: long enough, and not one that an attacker would try early.

"Early" is zxcvbn's estimate: it knows the common and breached password lists, keyboard walks,
dates, repeats and l33t spellings, and the words we hand it (the user's own names, the app's name).
No home-made entropy formula: a length-and-classes rule accepts "Password123!" and refuses a long
passphrase.
"""

import re
from collections.abc import Iterable

from zxcvbn import zxcvbn

MIN_LENGTH = 12
MAX_LENGTH = 128
# zxcvbn's scale 0-4; 3 means about 10^8 guesses or more ("safely unguessable" for an online attack
# behind a login throttle, with argon2 slowing an offline one).
MIN_SCORE = 3
# A password built on the user's own name is the first thing a targeted attacker tries: it must clear
# the top score, 10^10 guesses or more.
MIN_SCORE_WITH_OWN_NAME = 4
# zxcvbn's own limit (its matching grows fast with length); a longer password is judged on its start.
_CHECKED_LENGTH = 72
_APP_WORDS = ("clinann", "clinical", "annotation")
_WORD = re.compile(r"[^\W_]+")


def name_words(*names: str | None) -> list[str]:
    """The words a guesser would take from a user's names: each name whole, without its punctuation,
    and each part of it ("dr.smith" gives dr.smith, drsmith, dr, smith)."""
    words: list[str] = []
    for name in names:
        if not name:
            continue
        lowered = name.strip().lower()
        parts = _WORD.findall(lowered)
        for word in (lowered, "".join(parts), *parts):
            if word and word not in words:
                words.append(word)
    return words


def password_problem(password: str, user_inputs: Iterable[str] = ()) -> str | None:
    """What is wrong with a password as a new password, or None when it is acceptable.

    ``user_inputs`` are words of the account (see ``name_words``) that the password must not lean on.
    The message has no field name: the caller knows which field it came from.
    """
    if len(password) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    words = [*dict.fromkeys([*user_inputs, *_APP_WORDS])]
    judged = zxcvbn(password[:_CHECKED_LENGTH], user_inputs=words)
    # zxcvbn reports the cheapest reading of a password: "Smith2026" reads as a common surname, not as
    # the user's own name, so the name is also looked for as it stands.
    flattened = "".join(_WORD.findall(password.lower()))
    uses_own_name = any(len(word) >= 4 and word in flattened for word in words) or any(
        match.get("pattern") == "dictionary" and match.get("dictionary_name") == "user_inputs"
        for match in judged["sequence"]
    )
    if uses_own_name and judged["score"] < MIN_SCORE_WITH_OWN_NAME:
        return (
            "too easy to guess: it is built on your user name, your name or the app's name; "
            "add words of your own"
        )
    if judged["score"] < MIN_SCORE:
        feedback = judged["feedback"]
        advice = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
        return f"too easy to guess. {advice}".strip()
    return None
