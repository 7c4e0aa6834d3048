"""Config validation shared by the model families: one ValueError per bad setting."""

from __future__ import annotations

import numpy as np


def check_int(config: dict, key: str, minimum: int = 1, optional: bool = False) -> None:
    """Checks ``config[key]`` is an int >= ``minimum`` (or None when ``optional``); stores it as int.

    Raises:
        ValueError: naming the key, what was received and what is expected.
    """
    value = config.get(key)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = f"an int >= {minimum}" + (" or null" if optional else "")
        raise ValueError(f"{key} must be {expected}, received {value!r}")
    config[key] = int(value)


def check_choice(config: dict, key: str, choices) -> None:
    """Checks ``config[key]`` is one of ``choices``.

    Raises:
        ValueError: naming the key, what was received and the allowed values.
    """
    if config.get(key) not in choices:
        raise ValueError(f"{key} must be one of {tuple(choices)}, received {config.get(key)!r}")
