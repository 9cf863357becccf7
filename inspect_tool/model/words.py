"""Counts in human text: the noun or verb that agrees with a number (``plural(2, "layer")`` is
"2 layers"). Used wherever prose is made, from the model up; a JSON document carries the
number itself."""

from __future__ import annotations


def agree(count: int, singular: str, plural_form: str | None = None) -> str:
    """The word that agrees with ``count``: ``singular`` for one, else ``plural_form``
    (``singular`` and an ``s`` unless told: ``agree(n, "match", "matches")``,
    ``agree(n, "has", "have")``)."""
    if count == 1:
        return singular
    return singular + "s" if plural_form is None else plural_form


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` and the noun that agrees with it: ``1 secret``, ``0 secrets``, ``2 secrets``;
    an irregular plural is given (``plural(n, "history entry", "history entries")``). Human
    text: a JSON document carries the number itself."""
    return f"{count} {agree(count, singular, plural_form)}"
