"""Argument checks shared by the concept calculators: integers with readable ValueErrors."""

from __future__ import annotations

import operator


class AttrDict(dict):
    """A dict whose keys can also be read as attributes (``item["rf"] == item.rf``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error



def _as_int(value, name: str) -> int:
    """Returns ``value`` as an int, raising ValueError for non-integers (bools included)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, received {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, received {value!r}") from None


def _positive(value, name: str) -> int:
    number = _as_int(value, name)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, received {value!r}")
    return number


def _non_negative(value, name: str) -> int:
    number = _as_int(value, name)
    if number < 0:
        raise ValueError(f"{name} must be zero or a positive integer, received {value!r}")
    return number
