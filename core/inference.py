"""Inference: the public contract (``read_image``, ``ImageError``, ``Predictor``).

Implementation lives in ``core.imaging`` (decoding user images safely) and ``core.predictor``
(loading a run's model and applying exactly its preprocessing).
"""

from core.imaging import ImageError, read_image
from core.predictor import Predictor

__all__ = ["ImageError", "Predictor", "read_image"]
