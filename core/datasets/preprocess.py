"""Preprocessing (applied once, in NumPy/OpenCV) and augmentation (Keras layers, training only).

Two plain-dict specs travel through a run's ``config.json``:

**Preprocessing spec** (``config["preprocessing"]``), applied by the trainer *and* the
``Predictor`` through :func:`apply_preprocessing`, so a run's images are prepared exactly once
and identically at training and at inference:

=================  ==========================================  =========
key                values                                      default
=================  ==========================================  =========
``image_size``     int >= 8: square side the images resize to  ``32``
``color``          ``"rgb"`` or ``"grayscale"``                ``"rgb"``
``equalization``   ``"none"``, ``"global"`` or ``"clahe"``      ``"none"``
``blur``           Gaussian kernel size, 0 (off) or odd >= 3    ``0``
``center_crop``    share of each side kept around the centre,   ``1.0``
                   in [0.5, 1] (1 = no crop)
=================  ==========================================  =========

Equalisation works on the luminance (the Y of YCrCb) for RGB images, so colours are kept.
``center_crop`` c < 1 trims a fixed border: an image is resized to S' = ceil(S / c) a side
(:func:`source_image_size`) and its central S × S pixels are kept. GTSRB images keep a margin of
about 10 % around the sign, so 0.8 spends the network's 32 pixels on the sign. The trainer loads
datasets at S' already, so a training image and a full-size photo given to the ``Predictor`` go
through the very same resize and crop.

**Augmentation spec** (``config["augmentation"]``), turned by :func:`build_augmentation` into a
``keras.Sequential`` of Keras preprocessing layers that sits inside the model graph. Those layers
only change images when called with ``training=True`` (``fit``); ``predict``/``evaluate`` pass
images through unchanged, and on an accelerator the work happens on the device:

=====================  ===========================================================  ==========
key                    meaning                                                      default
=====================  ===========================================================  ==========
``rotation_degrees``   random rotation in [-d, +d] degrees                          ``0``
``shift``              random translation, fraction of height/width, in [0, 1)      ``0``
``zoom``               random zoom in/out, fraction in [0, 1)                       ``0``
``shear_degrees``      random horizontal shear in [-d, +d] degrees, d in [0, 60]    ``0``
``perspective``        random perspective tilt of the corners, in [0, 0.4]         ``0``
``brightness``         random brightness change, fraction of the range, [0, 1]      ``0``
``contrast``           random contrast change, fraction in [0, 1]                   ``0``
``low_resolution``     share of images shrunk to between half their side and one     ``0``
                       pixel less, then enlarged back: the detail of a smaller photo
                       (``core.models.layers.RandomLowResolution``), in [0, 1]
``occlusion``          share of images with one random rectangle (2-20 % of the       ``0``
                       image) covered by noise: random erasing
                       (``core.models.layers.RandomOcclusion``), in [0, 1]
``flip``               ``"none"``, ``"horizontal"``, ``"vertical"``,                 ``"none"``
                       ``"horizontal_and_vertical"``
``fill_mode``          how the geometric warps fill new pixels: ``"nearest"``,      ``"nearest"``
                       ``"reflect"``, ``"constant"``, ``"wrap"``
``seed``               int or ``None``: seed of the random layers                   ``None``
=====================  ===========================================================  ==========

Flip is off by default: a mirrored "keep left" sign means "keep right". Example for signs:
``{"rotation_degrees": 10, "shift": 0.1, "zoom": 0.1, "brightness": 0.2, "flip": "none"}``;
for Dogs vs Cats (the study): ``{"rotation_degrees": 20, "flip": "horizontal"}``.

Each function accepts a dict that holds keys of both specs (so a caller may keep one dict); any
other key is a ``ValueError``. Normalisation (/255, or VGG's caffe mode) is *not* here: it lives
inside the model as layers. :func:`normalize` only shows what those layers compute (the page uses
it for the before/after view).
"""

from __future__ import annotations

from typing import Any, Iterable

import cv2
import numpy as np

from core.datasets.base import resize_square
from core.validation import number_in_range

DEFAULT_PREPROCESSING = {"image_size": 32, "color": "rgb", "equalization": "none", "blur": 0,
                         "center_crop": 1.0}
DEFAULT_AUGMENTATION = {
    "rotation_degrees": 0.0,
    "shift": 0.0,
    "zoom": 0.0,
    "shear_degrees": 0.0,
    "perspective": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "low_resolution": 0.0,
    "occlusion": 0.0,
    "flip": "none",
    "fill_mode": "nearest",
    "seed": None,
}
# The warps ``build_augmentation`` composes into one ``RandomAffine`` resampling.
GEOMETRIC_KEYS = ("rotation_degrees", "shift", "zoom", "shear_degrees", "perspective")
COLORS = ("rgb", "grayscale")
EQUALIZATIONS = ("none", "global", "clahe")
FLIP_MODES = ("none", "horizontal", "vertical", "horizontal_and_vertical")
FILL_MODES = ("nearest", "reflect", "constant", "wrap")
NORMALIZATION_MODES = ("none", "scale", "caffe")
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 1024
MAX_BLUR = 31
MIN_CENTER_CROP = 0.5
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILE_PIXELS = 8  # one CLAHE tile per ~8 pixels, between 2 and 8 tiles a side
# ImageNet means in BGR order, as Keras' VGG16 ``preprocess_input`` (caffe mode) subtracts them.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def resolve_preprocessing(spec: dict | None = None) -> dict:
    """Fills the defaults of a preprocessing spec and validates it.

    Args:
        spec: a dict with any of ``image_size``, ``color``, ``equalization``, ``blur``,
            ``center_crop`` (augmentation keys are allowed and ignored); ``None`` means all
            defaults.

    Returns:
        A new dict with exactly the preprocessing keys of ``DEFAULT_PREPROCESSING``.

    Raises:
        ValueError: an unknown key or a value out of range, with what was received.
    """
    spec = _check_keys(spec, "preprocessing")
    resolved = {key: spec.get(key, default) for key, default in DEFAULT_PREPROCESSING.items()}
    size = resolved["image_size"]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not (
        MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE
    ):
        raise ValueError(
            f"preprocessing image_size must be an int between {MIN_IMAGE_SIZE} and "
            f"{MAX_IMAGE_SIZE}, received {size!r}"
        )
    resolved["image_size"] = int(size)
    if resolved["color"] not in COLORS:
        raise ValueError(f"preprocessing color must be one of {COLORS}, received {resolved['color']!r}")
    if resolved["equalization"] not in EQUALIZATIONS:
        raise ValueError(
            f"preprocessing equalization must be one of {EQUALIZATIONS}, "
            f"received {resolved['equalization']!r}"
        )
    blur = resolved["blur"]
    if (
        isinstance(blur, bool)
        or not isinstance(blur, (int, np.integer))
        or not (blur in (0, 1) or (3 <= blur <= MAX_BLUR and blur % 2 == 1))
    ):
        raise ValueError(
            f"preprocessing blur must be 0 (off) or an odd Gaussian kernel size between 3 and "
            f"{MAX_BLUR}, received {blur!r}"
        )
    resolved["blur"] = int(blur) if blur != 1 else 0
    resolved["center_crop"] = number_in_range("preprocessing center_crop", resolved["center_crop"],
                                              MIN_CENTER_CROP, 1.0)
    return resolved


def source_image_size(spec: dict | None = None) -> int:
    """The side at which to load a dataset's images before ``spec`` is applied.

    Without a crop it is ``image_size``. With ``center_crop`` c < 1 it is ``ceil(image_size / c)``,
    so that the kept centre still has at least ``image_size`` pixels a side.

    Args:
        spec: a preprocessing spec; ``None`` means the defaults.

    Returns:
        The side in pixels.
    """
    spec = resolve_preprocessing(spec)
    return _outer_size(spec["image_size"], spec["center_crop"])


def _outer_size(size: int, center_crop: float) -> int:
    return int(np.ceil(size / center_crop - 1e-9))


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """``base.resize_square`` (the loaders' resize, so stored copies match), keeping a channel axis."""
    resized = resize_square(image, size)
    return resized[..., np.newaxis] if resized.ndim == 2 else resized


def _center_crop(image: np.ndarray, size: int, outer: int) -> np.ndarray:
    """Resizes to outer x outer, then keeps the central size x size pixels."""
    image = _resize(image, outer)
    offset = (outer - size) // 2
    return image[offset:offset + size, offset:offset + size]


def resolve_augmentation(spec: dict | None = None) -> dict:
    """Fills the defaults of an augmentation spec and validates it.

    Args:
        spec: a dict with any of the augmentation keys (preprocessing keys are allowed and
            ignored); ``None`` means no augmentation.

    Returns:
        A new dict with every augmentation key.

    Raises:
        ValueError: an unknown key or a value out of range, with what was received.
    """
    spec = _check_keys(spec, "augmentation")
    resolved = {key: spec.get(key, default) for key, default in DEFAULT_AUGMENTATION.items()}
    for key, upper in (("rotation_degrees", 180.0), ("shift", 0.99), ("zoom", 0.99),
                       ("shear_degrees", 60.0), ("perspective", 0.4), ("brightness", 1.0),
                       ("contrast", 1.0), ("low_resolution", 1.0), ("occlusion", 1.0)):
        resolved[key] = number_in_range(f"augmentation {key}", resolved[key], 0, upper)
    flip = resolved["flip"]
    if flip in (None, False):
        flip = "none"
    if flip not in FLIP_MODES:
        raise ValueError(f"augmentation flip must be one of {FLIP_MODES}, received {flip!r}")
    resolved["flip"] = flip
    if resolved["fill_mode"] not in FILL_MODES:
        raise ValueError(
            f"augmentation fill_mode must be one of {FILL_MODES}, received {resolved['fill_mode']!r}"
        )
    seed = resolved["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"augmentation seed must be an int or None, received {seed!r}")
    return resolved


def _check_keys(spec: dict | None, what: str) -> dict:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ValueError(f"a {what} spec must be a dict, received {type(spec).__name__}")
    known = set(DEFAULT_PREPROCESSING) | set(DEFAULT_AUGMENTATION)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(
            f"unknown {what} key(s) {unknown}; expected some of {sorted(known)}"
        )
    return spec


def _as_image_list(images: Any) -> list[np.ndarray] | np.ndarray:
    """Validates the input and returns a 4-D uint8 array or a list of 3-D uint8 arrays."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, received dtype {images.dtype}")
        if images.ndim == 3:  # a batch of single-channel images N x H x W
            images = images[..., np.newaxis]
        if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"images must be an array N x H x W x C with C in (1, 3, 4), received shape {images.shape}"
            )
        return images
    if isinstance(images, (list, tuple)):
        result = []
        for index, image in enumerate(images):
            array = np.asarray(image)
            if array.dtype != np.uint8:
                raise ValueError(f"image {index} must be uint8, received dtype {array.dtype}")
            if array.ndim == 2:
                array = array[..., np.newaxis]
            if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or min(array.shape[:2]) < 1:
                raise ValueError(
                    f"image {index} must be H x W x C with C in (1, 3, 4), received shape {array.shape}"
                )
            result.append(array)
        return result
    raise ValueError(
        f"images must be a uint8 array or a list of uint8 arrays, received {type(images).__name__}"
    )


def _make_clahe(size: int):
    tiles = int(np.clip(size // CLAHE_TILE_PIXELS, 2, 8))
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=(tiles, tiles))


def _preprocess_one(image: np.ndarray, spec: dict, clahe) -> np.ndarray:
    size = spec["image_size"]
    if image.shape[-1] == 4:
        image = image[..., :3]
    if spec["center_crop"] < 1.0:
        image = _center_crop(image, size, _outer_size(size, spec["center_crop"]))
    else:
        image = _resize(image, size)
    channels = image.shape[-1]
    if spec["color"] == "grayscale":
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if channels == 3 else image[..., 0]
        if spec["equalization"] == "global":
            gray = cv2.equalizeHist(np.ascontiguousarray(gray))
        elif spec["equalization"] == "clahe":
            gray = clahe.apply(np.ascontiguousarray(gray))
        if spec["blur"]:
            gray = cv2.GaussianBlur(gray, (spec["blur"], spec["blur"]), 0)
        return gray[..., np.newaxis]
    rgb = image if channels == 3 else np.repeat(image, 3, axis=-1)
    rgb = np.ascontiguousarray(rgb)
    if spec["equalization"] != "none":
        ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        luma = np.ascontiguousarray(ycrcb[..., 0])
        ycrcb[..., 0] = cv2.equalizeHist(luma) if spec["equalization"] == "global" else clahe.apply(luma)
        rgb = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    if spec["blur"]:
        rgb = cv2.GaussianBlur(rgb, (spec["blur"], spec["blur"]), 0)
    return rgb


def apply_preprocessing(images: np.ndarray | Iterable[np.ndarray], spec: dict | None = None) -> np.ndarray:
    """Resizes, converts colour, equalises and blurs images, as a run's spec says.

    Args:
        images: a uint8 array N x H x W x C (C = 1, 3 or 4; RGB order; N x H x W is grayscale)
            or a list of uint8 arrays H x W x C of any sizes.
        spec: a preprocessing spec (see the module docstring); ``None`` means the defaults.

    Returns:
        A uint8 array (N, S, S, C) with S = ``spec["image_size"]``, C = 1 for ``"grayscale"``
        and 3 for ``"rgb"`` (alpha is dropped, grayscale inputs are repeated to RGB).

    Raises:
        ValueError: a bad spec, or images that are not uint8 or not image-shaped.
    """
    spec = resolve_preprocessing(spec)
    batch = _as_image_list(images)
    size = spec["image_size"]
    channels = 1 if spec["color"] == "grayscale" else 3
    count = len(batch)
    output = np.empty((count, size, size, channels), dtype=np.uint8)
    if count == 0:
        return output
    plain = spec["equalization"] == "none" and not spec["blur"] and spec["center_crop"] == 1.0
    if isinstance(batch, np.ndarray) and plain and batch.shape[1:3] == (size, size):
        # Fast path: nothing to resize or filter, only (maybe) a colour conversion.
        if batch.shape[-1] == channels:
            output[:] = batch
            return output
        if batch.shape[-1] == 4 and channels == 3:
            output[:] = batch[..., :3]
            return output
    clahe = _make_clahe(size) if spec["equalization"] == "clahe" else None
    for index in range(count):
        output[index] = _preprocess_one(batch[index], spec, clahe)
    return output


def build_augmentation(spec: dict | None = None, name: str = "augmentation"):
    """Builds the training-time augmentation as Keras preprocessing layers.

    The returned ``keras.Sequential`` goes inside the model, right after the input: its layers
    are random only when called with ``training=True``; at inference they pass images through.
    It expects uint8-valued float images (0..255), which is what the models take.

    Args:
        spec: an augmentation spec (see the module docstring); ``None`` or all zeros gives a
            model with a single ``Identity`` layer.
        name: the name of the returned Sequential.

    Returns:
        A ``keras.Sequential`` holding, in order, ``random_affine`` (one warp for rotation,
        shift, zoom, shear and perspective: ``core.models.layers.RandomAffine``),
        ``random_low_resolution``, ``random_brightness``, ``random_contrast``, ``random_flip``,
        ``random_occlusion`` (only the ones the spec enables).
    """
    import keras  # imported here: ``core.datasets`` must stay cheap to import

    from core.models.layers import RandomAffine, RandomLowResolution, RandomOcclusion

    spec = resolve_augmentation(spec)
    seed = spec["seed"]
    layers = []
    geometry = {key: spec[key] for key in GEOMETRIC_KEYS}
    if any(value > 0 for value in geometry.values()):
        layers.append(RandomAffine(**geometry, fill_mode=spec["fill_mode"], seed=seed,
                                   name="random_affine"))
    if spec["low_resolution"] > 0:
        layers.append(RandomLowResolution(spec["low_resolution"], seed=seed,
                                          name="random_low_resolution"))
    if spec["brightness"] > 0:
        layers.append(keras.layers.RandomBrightness(
            spec["brightness"], value_range=(0, 255), seed=seed, name="random_brightness"))
    if spec["contrast"] > 0:
        layers.append(keras.layers.RandomContrast(
            spec["contrast"], value_range=(0, 255), seed=seed, name="random_contrast"))
    if spec["flip"] != "none":
        layers.append(keras.layers.RandomFlip(spec["flip"], seed=seed, name="random_flip"))
    if spec["occlusion"] > 0:
        layers.append(RandomOcclusion(spec["occlusion"], seed=seed, name="random_occlusion"))
    if not layers:
        layers.append(keras.layers.Identity(name="no_augmentation"))
    return keras.Sequential(layers, name=name)


def flip_into_warp(augmentation):
    """``augmentation`` with each ``RandomFlip`` that follows a ``RandomAffine`` folded into the warp.

    ``build_augmentation`` puts a flip after the warp. Keras' ``RandomFlip`` then reverses the
    whole batch and selects per image, which took a third of the augmentation's time at 224 px;
    ``RandomAffine(flip=...)`` mirrors inside the one resampling instead. The images follow the
    same distribution, but the draws come from the warp's seed generator, so they differ from
    the two layers' draws: used where the augmented images are computed once (cached bottleneck
    features), not inside a saved model.

    Args:
        augmentation: a ``keras.Sequential`` from ``build_augmentation``, or any layer.

    Returns:
        A new ``keras.Sequential`` (the other layers shared), or ``augmentation`` itself when
        there is nothing to fold.
    """
    import keras

    from core.models.layers import RandomAffine

    if not isinstance(augmentation, keras.Sequential):
        return augmentation
    layers, folded = [], False
    for layer in augmentation.layers:
        previous = layers[-1] if layers else None
        if (isinstance(layer, keras.layers.RandomFlip) and isinstance(previous, RandomAffine)
                and previous.flip == "none" and layer.data_format == "channels_last"):
            layers[-1] = RandomAffine.from_config(dict(previous.get_config(), flip=layer.mode))
            folded = True
        else:
            layers.append(layer)
    return keras.Sequential(layers, name=augmentation.name) if folded else augmentation


def normalize(images: np.ndarray, mode: str = "scale") -> np.ndarray:
    """Shows what the models' normalisation layers compute (the models do it themselves).

    Args:
        images: uint8 array N x H x W x C, RGB.
        mode: ``"none"`` (float copy), ``"scale"`` (x / 255, range [0, 1]) or ``"caffe"``
            (RGB to BGR, minus the ImageNet mean per channel, as VGG16 expects).

    Returns:
        A float32 array of the same shape.
    """
    if mode not in NORMALIZATION_MODES:
        raise ValueError(f"normalisation mode must be one of {NORMALIZATION_MODES}, received {mode!r}")
    values = np.asarray(images, dtype=np.float32)
    if mode == "scale":
        return values / 255.0
    if mode == "caffe":
        if values.shape[-1] != 3:
            raise ValueError(f"caffe normalisation needs RGB images, received {values.shape[-1]} channel(s)")
        return values[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    return values
