"""Config validation shared by the model families: one ValueError per bad setting."""

from __future__ import annotations

import numpy as np

from core.validation import number_in_range

# Upper bounds of integer settings: a typo such as epochs=99999999999999999999 is refused at
# once instead of training for days. Keys not listed are bounded by MAX_INT_SETTING.
MAX_INT_SETTING = 2**31 - 1
MAXIMUMS = {"epochs": 1000, "head_epochs": 1000, "fine_tune_epochs": 1000, "epoch_repeats": 100,
            "batch_size": 8192, "head_units": 65536, "image_size": 1024, "committee_size": 9,
            # a week: a longer budget is almost certainly a unit mistake (seconds, not minutes)
            "time_budget_seconds": 7 * 24 * 3600}


def check_int(config: dict, key: str, minimum: int = 1, optional: bool = False,
              maximum: int | None = None) -> None:
    """Checks ``config[key]`` is an int in ``minimum .. maximum`` (or None when ``optional``);
    stores it as int. ``maximum`` defaults to ``MAXIMUMS[key]``, else ``MAX_INT_SETTING``.

    Raises:
        ValueError: naming the key, what was received and what is expected.
    """
    value = config.get(key)
    if optional and value is None:
        return
    if maximum is None:
        maximum = MAXIMUMS.get(key, MAX_INT_SETTING)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
            minimum <= value <= maximum):
        expected = f"an int in {minimum}..{maximum}" + (" or null" if optional else "")
        raise ValueError(f"{key} must be {expected}, received {value!r}")
    config[key] = int(value)


def check_choice(config: dict, key: str, choices) -> None:
    """Checks ``config[key]`` is one of ``choices``.

    Raises:
        ValueError: naming the key, what was received and the allowed values.
    """
    if config.get(key) not in choices:
        raise ValueError(f"{key} must be one of {tuple(choices)}, received {config.get(key)!r}")


def check_number(config: dict, key: str, low: float, high: float, *, high_open: bool = False) -> None:
    """Checks ``config[key]`` is a number in ``[low, high]`` (``[low, high)`` when ``high_open``);
    stores it as float (``core.validation.number_in_range``).

    Raises:
        ValueError: naming the key, what was received and the allowed range.
    """
    config[key] = number_in_range(key, config.get(key), low, high, high_open=high_open)
