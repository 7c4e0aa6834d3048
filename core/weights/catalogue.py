"""What ImageNet weights exist for each backbone: Keras' official files, their URLs and checksums.

Two variants per backbone: ``no_top`` (the convolutional base, what transfer learning uses) and
``top`` (with the 1,000-class ImageNet classifier, what ``ImageNetClassifier`` uses).

Checksums: Keras publishes MD5s for VGG16's files, which are pinned here. It publishes none for
the MobileNets; their SHA-256 is recorded on the first successful download
(``<data root>/checksums.json``, the datasets' pin file) and later downloads must match it.
A lab can mirror the files: ``$TLLAB_WEIGHTS_MIRROR`` replaces ``KERAS_APPLICATIONS_URL``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

NO_TOP = "no_top"
TOP = "top"
VARIANTS = (NO_TOP, TOP)
KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHTS_MIRROR_ENV = "TLLAB_WEIGHTS_MIRROR"
IMAGENET_INPUT_SIZE = 224


@dataclass(frozen=True)
class OfficialFile:
    """One of Keras' official ImageNet weights files.

    Attributes:
        backbone: ``vgg16``, ``mobilenetv2`` or ``mobilenet``.
        variant: ``no_top`` or ``top``.
        file_name: Keras' file name.
        path: the path under ``KERAS_APPLICATIONS_URL``.
        alpha: width multiplier the file fits (None for VGG16).
        md5: Keras' published MD5, or None (then the SHA-256 is pinned on first download).
        size: size in bytes, or None when unknown.
    """

    backbone: str
    variant: str
    file_name: str
    path: str
    alpha: float | None
    md5: str | None = None
    size: int | None = None

    @property
    def url(self) -> str:
        mirror = os.environ.get(WEIGHTS_MIRROR_ENV)
        return (mirror.rstrip("/") + "/" if mirror else KERAS_APPLICATIONS_URL) + self.path


OFFICIAL_FILES = {
    ("vgg16", NO_TOP): OfficialFile(
        "vgg16", NO_TOP, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", None,
        md5="6d6bbae143d832006294945121d1f1fc", size=58_889_256),
    ("vgg16", TOP): OfficialFile(
        "vgg16", TOP, "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5", None,
        md5="64373286793e3c8b2b4e3219cbf3544b", size=553_467_096),
    ("mobilenetv2", NO_TOP): OfficialFile(
        "mobilenetv2", NO_TOP, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", 1.0),
    ("mobilenetv2", TOP): OfficialFile(
        "mobilenetv2", TOP, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", 1.0),
    ("mobilenet", NO_TOP): OfficialFile(
        "mobilenet", NO_TOP, "mobilenet_7_5_224_tf_no_top.h5",
        "mobilenet/mobilenet_7_5_224_tf_no_top.h5", 0.75),
    ("mobilenet", TOP): OfficialFile(
        "mobilenet", TOP, "mobilenet_7_5_224_tf.h5", "mobilenet/mobilenet_7_5_224_tf.h5", 0.75),
}


def official_file(backbone: str, variant: str = NO_TOP) -> OfficialFile:
    """The official file of ``backbone``'s ``variant``.

    Raises:
        ValueError: for an unknown backbone or variant.
    """
    from core.models import backbones

    backbones.check_backbone(backbone)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, received {variant!r}")
    return OFFICIAL_FILES[(backbone, variant)]
