"""Reading the fields of a submitted form: one place, so every page words its errors the same way."""

from collections.abc import Callable
from typing import Any


def number_field(form: Any, field: str, kind: Callable[[str], Any], default: Any,
                 error: Callable[[str, str], Exception]) -> Any:  # fmt: skip
    """The field as a number of the given kind, the default when it is empty; a bad value raises the
    page's error naming the field."""
    raw = str(form.get(field) or "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise error(field, "must be a number") from None
