"""The convolution playground: a sample picture, uploads, kernels, NumPy convolution and pooling.

``convolve2d`` and ``pool2d`` compute exactly what Keras' ``Conv2D`` (cross-correlation, no bias)
and ``MaxPooling2D``/``AveragePooling2D`` compute, in NumPy, so a page can show every step.
"""

from __future__ import annotations

import numpy as np

from core.concepts.checks import _positive
from core.concepts.geometry import (KERAS_PADDINGS, POOL_MODES, dilated_kernel_size,
                                    keras_output_size, keras_padding_amounts)

SAMPLE_IMAGE_SIZE = 64
MAX_PLAYGROUND_SIDE = 96

# Classic 3x3 kernels (applied as cross-correlation, as CNN frameworks do).
KERNELS = {
    "edge": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float64),
    "blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 16.0,
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64),
}
CUSTOM_KERNEL_SIZES = (3, 5)


def sample_image(size: int = SAMPLE_IMAGE_SIZE, width: int | None = None) -> np.ndarray:
    """A traffic-sign-like picture drawn by code: a red-ringed speed-limit sign on a post.

    Args:
        size: side length in pixels (the height when ``width`` is given).
        width: width in pixels (default: ``size``); non-square pictures are drawn square at
            the larger side and resized.

    Returns:
        A ``(size, width, 3)`` uint8 RGB array, identical on every call.
    """
    import cv2

    size = _positive(size, "size")
    if width is not None and _positive(width, "width") != size:
        square = sample_image(max(size, width, 16))
        return cv2.resize(square, (width, size), interpolation=cv2.INTER_AREA)
    if size < 16:
        return cv2.resize(sample_image(16), (size, size), interpolation=cv2.INTER_AREA)
    rows = np.linspace(0.0, 1.0, size)[:, None]
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[..., 0] = (150 + 60 * rows).astype(np.uint8)  # sky: light at the top, greyer below
    image[..., 1] = (190 + 30 * rows).astype(np.uint8)
    image[..., 2] = (235 - 20 * rows).astype(np.uint8)
    image[int(size * 0.8):, :] = (96, 128, 80)  # grass
    centre = (size // 2, int(size * 0.42))
    radius = int(size * 0.36)
    post = max(1, size // 24)
    cv2.rectangle(image, (centre[0] - post, centre[1]), (centre[0] + post, size - 1), (90, 90, 90), -1)
    cv2.circle(image, centre, radius, (200, 20, 30), -1, lineType=cv2.LINE_AA)
    cv2.circle(image, centre, int(radius * 0.74), (245, 245, 245), -1, lineType=cv2.LINE_AA)
    scale = size / 64 * 0.9
    thickness = max(1, round(size / 32))
    (text_width, text_height), _ = cv2.getTextSize("50", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = (centre[0] - text_width // 2, centre[1] + text_height // 2)
    cv2.putText(image, "50", origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), thickness,
                lineType=cv2.LINE_AA)
    return image


def image_from_bytes(data: bytes, max_side: int = MAX_PLAYGROUND_SIDE) -> np.ndarray:
    """Decodes an uploaded image (EXIF-oriented RGB) and shrinks it to at most ``max_side``.

    Decoding goes through ``core.imaging.read_image``, so the playground refuses the same files
    (empty, too large, too many pixels, not an image) with the same messages as Classify.

    Args:
        data: the file's bytes.
        max_side: the longer side after resizing (images are never enlarged).

    Returns:
        A uint8 RGB array.

    Raises:
        ValueError: (``core.imaging.ImageError``) when the bytes are not an image we can read.
    """
    from PIL import Image

    from core.imaging import ImageError, read_image

    try:
        image = read_image(data)
    except ImageError as error:
        raise ValueError(f"Could not read the upload as an image: {error}") from None
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def to_grayscale(image) -> np.ndarray:
    """Luma (ITU-R BT.601) in [0, 1] as float64; a 2-D input is only rescaled from uint8."""
    array = np.asarray(image)
    values = array.astype(np.float64)
    if array.dtype == np.uint8:
        values /= 255.0
    if values.ndim == 2:
        return values
    if values.ndim == 3 and values.shape[2] in (1, 3, 4):
        if values.shape[2] == 1:
            return values[..., 0]
        return values[..., :3] @ np.array([0.299, 0.587, 0.114])
    raise ValueError(f"image must be H×W or H×W×(1, 3 or 4), received shape {array.shape}")


def kernel_weights(name: str, custom=None) -> np.ndarray:
    """A named kernel from ``KERNELS``, or ``custom`` numbers for ``name="custom"``.

    Args:
        name: ``"edge"``, ``"blur"``, ``"sharpen"``, ``"emboss"`` or ``"custom"``.
        custom: a square 3×3 or 5×5 array-like of numbers (for ``"custom"``).

    Returns:
        A float64 square array.
    """
    if name in KERNELS:
        return KERNELS[name].copy()
    if name != "custom":
        raise ValueError(f"Unknown kernel {name!r}; expected one of {(*KERNELS, 'custom')}")
    try:
        weights = np.asarray(custom, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"custom kernel must hold numbers only, received {custom!r}") from None
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or \
            weights.shape[0] not in CUSTOM_KERNEL_SIZES:
        raise ValueError(f"custom kernel must be 3×3 or 5×5, received shape {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise ValueError("custom kernel has empty or non-finite cells; fill every cell with a number")
    return weights


def pad_image(image, before: int, after: int | None = None, value: float = 0.0) -> np.ndarray:
    """Pads a 2-D array with ``before`` rows/columns at the top/left and ``after`` at the
    bottom/right (default: ``before``), filled with ``value``."""
    after = before if after is None else after
    return np.pad(np.asarray(image, dtype=np.float64), ((before, after), (before, after)),
                  constant_values=value)


def convolve2d(image, kernel, stride=1, padding=0, dilation=1) -> np.ndarray:
    """2-D cross-correlation, as a CNN convolution layer computes it (no kernel flip, no bias).

    Args:
        image: 2-D array (one channel).
        kernel: square 2-D weights.
        stride: stride S on both axes.
        padding: zero-padding P on every side, or ``"valid"``/``"same"`` (Keras semantics:
            ``"same"`` puts the extra pixel, if any, at the bottom/right).
        dilation: dilation rate d.

    Returns:
        The float64 feature map, of size ``conv_output_size`` per axis.
    """
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, received shape {image.shape}")
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be square and 2-D, received shape {kernel.shape}")
    stride = _positive(stride, "stride")
    dilation = _positive(dilation, "dilation")
    size = kernel.shape[0]
    (top, bottom) = keras_padding_amounts(image.shape[0], size, stride, padding, dilation)
    (left, right) = keras_padding_amounts(image.shape[1], size, stride, padding, dilation)
    effective = dilated_kernel_size(size, dilation)
    for axis, (low, high) in enumerate(((top, bottom), (left, right))):
        if effective > image.shape[axis] + low + high:
            raise ValueError(f"The dilated kernel ({effective}) does not fit the padded input "
                             f"(received image shape {image.shape}, padding={padding!r}, "
                             f"dilation={dilation})")
    padded = np.pad(image, ((top, bottom), (left, right)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (effective, effective))
    windows = windows[::stride, ::stride, ::dilation, ::dilation]
    return np.einsum("ijkl,kl->ij", windows, kernel)


def pool2d(feature_map, pool_size=2, stride=None, mode="max", padding="valid") -> np.ndarray:
    """Max or average pooling of a 2-D array, as Keras' MaxPooling2D/AveragePooling2D do.

    With ``padding="same"`` the padded cells never win a max and are left out of an average
    (TensorFlow's semantics).

    Args:
        feature_map: 2-D array.
        pool_size: window size.
        stride: stride (default ``pool_size``).
        mode: ``"max"`` or ``"average"``.
        padding: ``"valid"`` or ``"same"``.

    Returns:
        The pooled float64 array.
    """
    values = np.asarray(feature_map, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"feature_map must be 2-D, received shape {values.shape}")
    if mode not in POOL_MODES:
        raise ValueError(f"mode must be one of {POOL_MODES}, received {mode!r}")
    pool_size = _positive(pool_size, "pool_size")
    stride = pool_size if stride is None else _positive(stride, "stride")
    if not isinstance(padding, str) or padding.lower() not in KERAS_PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', received {padding!r}")
    for axis in (0, 1):
        keras_output_size(values.shape[axis], pool_size, stride, padding)  # validates the fit
    top, bottom = keras_padding_amounts(values.shape[0], pool_size, stride, padding)
    left, right = keras_padding_amounts(values.shape[1], pool_size, stride, padding)
    padded = np.pad(values, ((top, bottom), (left, right)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (pool_size, pool_size))
    windows = windows[::stride, ::stride]
    reduce = np.nanmax if mode == "max" else np.nanmean
    return reduce(windows, axis=(2, 3))
