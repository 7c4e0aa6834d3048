"""Inference: the public contract (``read_image``, ``ImageError``, ``Predictor``,
``ImageNetClassifier``).

Implementation lives in ``core.imaging`` (decoding user images safely), ``core.predictor``
(loading a run's model and applying exactly its preprocessing) and ``core.imagenet`` (the
pretrained networks with their 1,000-class ImageNet top).
"""

from core.imagenet import ImageNetClassifier
from core.imaging import ImageError, read_image
from core.predictor import Predictor

__all__ = ["ImageError", "ImageNetClassifier", "Predictor", "read_image"]
