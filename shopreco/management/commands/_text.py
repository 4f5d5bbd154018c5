"""Wording shared by shopreco's commands (the leading underscore keeps Django from listing it as
a command): their output is read by people, so counts agree with their nouns."""

from __future__ import annotations

from django.utils.translation import ngettext


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """``"1 user"``, ``"2 users"``: the number and its noun in the right number."""
    return f"{n} {ngettext(singular, plural or f'{singular}s', n)}"


def listed(parts: list[str]) -> str:
    """``"a, b and c"``: the way a sentence lists things."""
    if len(parts) < 2:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} and {parts[-1]}"
