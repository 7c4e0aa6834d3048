"""Value checks shared by configs, layers and losses: one ValueError wording everywhere.

Plain Python (NumPy numbers accepted), so Keras layers and losses can validate their own
arguments when a saved model is loaded, with the same message a config check gives.
"""

from __future__ import annotations

import numbers


def number_in_range(name: str, value, low: float, high: float, *, high_open: bool = False) -> float:
    """Checks that ``value`` is a real number in ``[low, high]`` (``[low, high)`` when ``high_open``).

    Args:
        name: what the value is, for the message (e.g. ``"dropout"``).
        value: the value to check; booleans are refused.
        low: smallest allowed value.
        high: largest allowed value (or the excluded bound).
        high_open: exclude ``high`` itself.

    Returns:
        The value as a float.

    Raises:
        ValueError: naming the value, what was received and the allowed range.
    """
    inside = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if inside:
        inside = low <= float(value) < high if high_open else low <= float(value) <= high
    if not inside:
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, received {value!r}")
    return float(value)
