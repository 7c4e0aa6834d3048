"""Decoding user images safely: bytes in, an RGB, EXIF-oriented ``PIL.Image`` out.

Everything a user can upload goes through ``read_image``: it refuses empty files, non-images,
truncated or corrupt files, decompression bombs and oversized files with an ``ImageError`` whose
message is written for humans, and it converts every pixel layout Pillow can give (16-bit,
CMYK, palette with transparency, RGBA/LA, grayscale, bilevel) to 8-bit RGB the same way.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Images with more pixels than this are refused before decoding (a 40-megapixel photo is
# about 7,700 x 5,200; a phone camera gives at most ~50 MP but a "classify" input needs far less).
MAX_IMAGE_PIXELS = 40_000_000
# Pillow's names of the formats we accept (MPO is the multi-picture JPEG that phones write).
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "PPM", "WEBP", "BMP", "GIF")
# File extensions for upload widgets (PPM's family: pgm and pbm decode through the same plugin).
UPLOAD_EXTENSIONS = ("jpg", "jpeg", "png", "ppm", "pgm", "pbm", "webp", "bmp", "gif")
FORMATS_TEXT = "JPEG, PNG, PPM, WebP, BMP or GIF"
# Transparent pixels are composited over this background.
BACKGROUND_RGB = (255, 255, 255)
# Upload limit when the caller passes none: Streamlit's own default server.maxUploadSize (200 MB).
# The app passes its configured limit in (``ui.common.max_upload_bytes`` reads st.get_option).
DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024

# Exceptions Pillow raises while parsing or decoding damaged files.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                  struct.error, ZeroDivisionError)
# What decoding a damaged or hostile image may raise: callers that skip bad files catch exactly
# these (plus PIL's DecompressionBombError), never a bare ``Exception``.
DECODE_ERRORS = _DECODE_ERRORS + (Image.DecompressionBombError,)


class ImageError(ValueError):
    """An uploaded file could not be used as an image; ``str(error)`` is meant for humans.

    Attributes:
        reason: a short machine-readable code: ``"empty"``, ``"too_large"``, ``"not_image"``,
            ``"unsupported_format"``, ``"too_many_pixels"``, ``"corrupt"`` or ``"bad_type"``.
    """

    def __init__(self, message: str, reason: str = "corrupt"):
        super().__init__(message)
        self.reason = reason


def format_size(num_bytes: int) -> str:
    """Formats a byte count for humans, e.g. ``"12.3 MB"`` or ``"812 bytes"``."""
    if num_bytes < 1024:
        return f"{num_bytes} bytes"
    if num_bytes < 1024 * 1024:
        return f"{num_bytes / 1024:.1f} KB"
    return f"{num_bytes / (1024 * 1024):.1f} MB"


def file_too_large_message(num_bytes: int, max_bytes: int | None = None) -> str:
    """The message for a file above the upload limit.

    Args:
        num_bytes: the file's size.
        max_bytes: the limit; default ``DEFAULT_MAX_UPLOAD_BYTES``.

    Returns:
        A sentence naming both sizes and where the limit is set.
    """
    limit = DEFAULT_MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    return (f"The file is {format_size(num_bytes)}, larger than the {format_size(limit)} upload "
            f"limit (server.maxUploadSize in .streamlit/config.toml). Use a smaller image.")


def check_upload_size(num_bytes: int, max_bytes: int | None = None) -> None:
    """Raises ``ImageError`` (reason ``"too_large"``) when ``num_bytes`` exceeds the upload limit."""
    limit = DEFAULT_MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    if num_bytes > limit:
        raise ImageError(file_too_large_message(num_bytes, limit), reason="too_large")


def _as_bytes(data) -> bytes:
    """Accepts bytes-like objects and file-like objects (e.g. Streamlit's ``UploadedFile``)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if hasattr(data, "getvalue"):
        return bytes(data.getvalue())
    if hasattr(data, "read"):
        return bytes(data.read())
    raise ImageError(
        f"Expected the file's bytes, received {type(data).__name__}", reason="bad_type"
    )


def read_image(data, *, max_bytes: int | None = None, max_pixels: int = MAX_IMAGE_PIXELS,
               draft_size: int | None = None) -> Image.Image:
    """Decodes an uploaded file into an 8-bit RGB image, oriented as its EXIF tag says.

    Animated GIF/WebP/PNG files give their first frame.

    Args:
        data: the file's bytes (or a file-like object such as Streamlit's ``UploadedFile``).
        max_bytes: refuse larger files; default ``DEFAULT_MAX_UPLOAD_BYTES`` (the app passes
            its ``server.maxUploadSize``, read in ``ui.common``).
        max_pixels: refuse images with more pixels (decompression bombs); default
            ``MAX_IMAGE_PIXELS``.
        draft_size: when set, JPEGs are decoded at the smallest scale (1/2, 1/4, 1/8) whose
            sides stay at least this many pixels (fast previews and import checks).

    Returns:
        A fully decoded ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        ImageError: with a message for humans when the file is empty, too large, not an image,
            of an unsupported format, has too many pixels, or is truncated or corrupt.
    """
    raw = _as_bytes(data)
    if not raw:
        raise ImageError("The file is empty (0 bytes): there is no image in it.", reason="empty")
    check_upload_size(len(raw), max_bytes)
    with warnings.catch_warnings():
        # Pillow warns (rather than raises) between its own limit and twice that: make it an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw))
        except UnidentifiedImageError as error:
            raise ImageError(
                f"This file is not an image we can read (expected {FORMATS_TEXT}).",
                reason="not_image",
            ) from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(_too_many_pixels_message(None, max_pixels), reason="too_many_pixels") \
                from error
        except _DECODE_ERRORS as error:
            raise ImageError(
                f"This file looks like an image but its header is damaged ({error}).",
                reason="corrupt",
            ) from error
        if image.format not in SUPPORTED_FORMATS:
            raise ImageError(
                f"{image.format or 'This'} images are not supported; expected {FORMATS_TEXT}.",
                reason="unsupported_format",
            )
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(f"The image has no pixels ({width}x{height}).", reason="corrupt")
        if width * height > max_pixels:
            raise ImageError(_too_many_pixels_message((width, height), max_pixels),
                             reason="too_many_pixels")
        try:
            image.seek(0)
            if draft_size and image.format in ("JPEG", "MPO"):
                image.draft("RGB", (int(draft_size), int(draft_size)))
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(_too_many_pixels_message(image.size, max_pixels),
                             reason="too_many_pixels") from error
        except MemoryError as error:
            raise ImageError(_too_many_pixels_message(image.size, max_pixels),
                             reason="too_many_pixels") from error
        except _DECODE_ERRORS as error:
            raise ImageError(
                f"The {image.format} file is truncated or corrupt and could not be decoded "
                f"({error}).",
                reason="corrupt",
            ) from error
    image = _exif_oriented(image)
    return to_rgb(image)


def _too_many_pixels_message(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = f"{max_pixels / 1e6:g} megapixels"
    if size is None:
        return (f"The image is far too large to decode safely (a possible decompression bomb); "
                f"the limit is {limit}.")
    width, height = size
    return (f"The image is {width}x{height} = {width * height / 1e6:.1f} megapixels, above the "
            f"{limit} limit (a possible decompression bomb). Resize it and upload it again.")


def _exif_oriented(image: Image.Image) -> Image.Image:
    """Applies the EXIF orientation; an unreadable EXIF block leaves the image as stored."""
    try:
        oriented = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:
        return image
    return image if oriented is None else oriented


def to_rgb(image: Image.Image, background: tuple[int, int, int] = BACKGROUND_RGB) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB.

    * 16/32-bit integer grayscale (``I;16*``, ``I``) is scaled from 0..65535 to 0..255 (Pillow's
      own conversion would clip every value above 255 to white);
    * float grayscale (``F``) is taken as 0..1 when its maximum is at most 1, else 0..255;
    * palette images with transparency, ``RGBA``, ``LA``, ``PA`` and ``RGBa`` are composited over
      ``background``;
    * ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``L`` and ``1`` use Pillow's conversions.

    Args:
        image: a loaded image.
        background: RGB colour behind transparent pixels.

    Returns:
        An image in mode ``"RGB"`` (the same object when it already is).
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.float64)
        gray = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        gray = np.clip(np.round(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
        if mode == "RGB":
            return image
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode == "L" and "transparency" in image.info:
        return to_rgb(image.convert("LA"), background)
    if mode == "RGB" or "transparency" not in image.info:
        return image.convert("RGB")
    return to_rgb(image.convert("RGBA"), background)


def enlarge(image, size: int) -> np.ndarray:
    """Scales a small uint8 image (H, W[, C]) up to ``size`` pixels wide with visible pixels.

    Nearest-neighbour by an integer factor, so a 32x32 model input shows as crisp blocks;
    images already at least ``size`` wide are returned unchanged. One channel becomes RGB.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    factor = max(1, int(size) // max(1, array.shape[1]))
    if factor > 1:
        array = np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)
    return array.astype(np.uint8, copy=False)


def encode_png(image) -> bytes:
    """Encodes a PIL image or a uint8 array (HxW, HxWx1 or HxWx3) as PNG bytes."""
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        image = Image.fromarray(array.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
