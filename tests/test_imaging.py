"""core.imaging.read_image: every bad input gets an ImageError, every pixel layout becomes RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core import imaging
from core.inference import ImageError, read_image


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size, with a few bytes of pixel data (a bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(
        b"IDAT", zlib.compress(b"\x00" * 4096)) + png_chunk(b"IEND", b"")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def gradient_rgb(width: int = 24, height: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 10 % 256, y * 15 % 256, (x + y) * 5 % 256], axis=-1).astype(np.uint8)


# --- formats ----------------------------------------------------------------------------------

@pytest.mark.parametrize("format_name", ["PNG", "PPM", "BMP", "GIF", "WEBP", "JPEG"])
def test_supported_formats_decode_to_rgb(format_name):
    pixels = gradient_rgb()
    options = {"lossless": True} if format_name == "WEBP" else {}
    if format_name == "JPEG":
        options = {"quality": 95}
    source = Image.fromarray(pixels)
    if format_name == "GIF":
        source = source.quantize(256)
        pixels = np.asarray(source.convert("RGB"))
    image = read_image(encode(source, format_name, **options))
    assert image.mode == "RGB" and image.size == (24, 16)
    difference = np.abs(np.asarray(image).astype(int) - pixels.astype(int))
    assert difference.max() <= (40 if format_name == "JPEG" else 0)


def test_accepts_file_like_objects():
    data = encode(Image.new("RGB", (5, 4), (1, 2, 3)), "PNG")
    image = read_image(io.BytesIO(data))
    assert np.asarray(image)[0, 0].tolist() == [1, 2, 3]


def test_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    image = read_image(buffer.getvalue())
    assert np.asarray(image)[4, 4].tolist() == [255, 0, 0]


# --- conversions, pixel-wise ------------------------------------------------------------------

def test_16_bit_grayscale_png_is_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 65535, 32768]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    rgb = np.asarray(read_image(data))
    assert rgb.shape == (1, 4, 3)
    assert rgb[..., 0].tolist() == [[0, 100, 255, 128]]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_32_bit_integer_mode_is_scaled_like_16_bit():
    image = Image.fromarray(np.array([[0, 65535, 257 * 7]], dtype=np.int32), mode="I")
    assert np.asarray(imaging.to_rgb(image))[0, :, 0].tolist() == [0, 255, 7]


def test_cmyk_converts_exactly_in_memory_and_closely_from_jpeg():
    cmyk = Image.new("CMYK", (16, 8))
    cmyk.paste((255, 0, 0, 0), (0, 0, 8, 8))  # cyan
    cmyk.paste((0, 0, 0, 128), (8, 0, 16, 8))  # half black
    exact = np.asarray(imaging.to_rgb(cmyk))
    assert exact[4, 2].tolist() == [0, 255, 255]
    assert exact[4, 12].tolist() == [127, 127, 127]
    decoded = np.asarray(read_image(encode(cmyk, "JPEG", quality=100)))
    assert decoded.shape == (8, 16, 3)
    assert np.abs(decoded[4, 2].astype(int) - [0, 255, 255]).max() <= 8
    assert np.abs(decoded[4, 12].astype(int) - [127, 127, 127]).max() <= 8


def test_palette_with_transparency_is_composited_over_white():
    palette_image = Image.new("P", (4, 1))
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    palette_image.putdata([0, 1, 0, 1])
    data = encode(palette_image, "PNG", transparency=1)
    rgb = np.asarray(read_image(data))
    assert rgb[0].tolist() == [[255, 0, 0], [255, 255, 255], [255, 0, 0], [255, 255, 255]]


def test_palette_without_transparency_keeps_colours():
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([10, 20, 30, 40, 50, 60] + [0] * (254 * 3))
    palette_image.putdata([0, 1])
    assert np.asarray(read_image(encode(palette_image, "PNG")))[0].tolist() == [
        [10, 20, 30], [40, 50, 60]]


def test_rgba_is_composited_over_white():
    pixels = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 128]]], dtype=np.uint8)
    rgb = np.asarray(read_image(encode(Image.fromarray(pixels, "RGBA"), "PNG")))
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[0, 1].tolist() == [255, 255, 255]
    expected = np.round(np.array([0, 0, 255]) * 128 / 255 + 255 * (1 - 128 / 255))
    assert np.abs(rgb[0, 2].astype(int) - expected).max() <= 1


def test_gray_alpha_is_composited_over_white():
    pixels = np.array([[[0, 255], [0, 0]]], dtype=np.uint8)
    rgb = np.asarray(read_image(encode(Image.fromarray(pixels, "LA"), "PNG")))
    assert rgb[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_grayscale_and_bilevel_are_replicated_to_three_channels():
    gray = np.array([[0, 77, 200]], dtype=np.uint8)
    rgb = np.asarray(read_image(encode(Image.fromarray(gray, "L"), "PNG")))
    assert rgb.tolist() == [[[0, 0, 0], [77, 77, 77], [200, 200, 200]]]
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    assert np.asarray(read_image(encode(bilevel, "PNG")))[0].tolist() == [[0, 0, 0], [255] * 3]


def test_exif_orientation_is_applied():
    # 40 wide x 20 high: left half red, right half blue; orientation 6 = rotate 90° clockwise.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(pixels), "PNG", exif=exif.tobytes())
    image = read_image(data)
    assert image.size == (20, 40)  # width and height swapped
    array = np.asarray(image)
    assert array[5, 10].tolist() == [255, 0, 0]  # the left half is now the top half
    assert array[35, 10].tolist() == [0, 0, 255]


def test_exif_orientation_in_a_jpeg():
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :32] = (250, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise: the left half ends at the bottom
    image = read_image(encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes()))
    assert image.size == (32, 64)
    array = np.asarray(image).astype(int)
    assert array[56, 16, 0] > 200 and array[8, 16, 0] < 50


# --- bad input ----------------------------------------------------------------------------------

def test_empty_file_is_refused():
    with pytest.raises(ImageError, match="empty") as caught:
        read_image(b"")
    assert caught.value.reason == "empty"
    assert isinstance(caught.value, ValueError)


def test_non_image_bytes_are_refused():
    with pytest.raises(ImageError, match="not an image") as caught:
        read_image(b"%PDF-1.4 this is not a picture at all" * 20)
    assert caught.value.reason == "not_image"


def test_truncated_png_is_refused():
    data = encode(Image.fromarray(gradient_rgb(64, 64)), "PNG")
    with pytest.raises(ImageError, match="truncated or corrupt") as caught:
        read_image(data[: len(data) // 2])
    assert caught.value.reason == "corrupt"


def test_truncated_jpeg_is_refused():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=90)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        read_image(data[: len(data) // 3])


def test_damaged_header_is_refused():
    data = bytearray(encode(Image.fromarray(gradient_rgb()), "PNG"))
    data[16:24] = b"\xff" * 8  # width and height fields of IHDR, CRC now wrong
    with pytest.raises(ImageError):
        read_image(bytes(data))


def test_decompression_bomb_header_is_refused_before_decoding():
    with pytest.raises(ImageError, match="megapixels") as caught:
        read_image(png_header_only(10_000, 5_000))  # 50 MP > 40 MP limit, a 4 KB file
    assert caught.value.reason == "too_many_pixels"
    assert "10000x5000" in str(caught.value)


def test_pillow_bomb_error_becomes_image_error():
    # 200 MP is above twice Pillow's own limit: Pillow raises DecompressionBombError in open().
    with pytest.raises(ImageError, match="decompression bomb") as caught:
        read_image(png_header_only(20_000, 10_000))
    assert caught.value.reason == "too_many_pixels"


def test_pixel_limit_applies_to_real_images():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="megapixels"):
        read_image(data, max_pixels=5_000)
    assert read_image(data).size == (100, 100)


def test_unsupported_format_is_refused():
    data = encode(Image.new("RGB", (4, 4)), "TIFF")
    with pytest.raises(ImageError, match="not supported") as caught:
        read_image(data)
    assert caught.value.reason == "unsupported_format"


def test_file_larger_than_the_limit_is_refused_with_sizes():
    noise = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    with pytest.raises(ImageError, match="maxUploadSize") as caught:
        read_image(data, max_bytes=100)
    assert caught.value.reason == "too_large"
    assert "100 bytes" in str(caught.value)


def test_wrong_type_is_refused():
    with pytest.raises(ImageError, match="Expected the file's bytes"):
        read_image(12345)


# --- upload limit: passed in by the app (ui.common reads server.maxUploadSize) -----------------

def test_upload_limit_defaults_to_streamlits_and_a_passed_limit_wins():
    assert imaging.DEFAULT_MAX_UPLOAD_BYTES == 200 * 1024 * 1024
    imaging.check_upload_size(imaging.DEFAULT_MAX_UPLOAD_BYTES)  # exactly the limit is fine
    with pytest.raises(ImageError, match="larger than the 200.0 MB upload limit"):
        imaging.check_upload_size(imaging.DEFAULT_MAX_UPLOAD_BYTES + 1)
    with pytest.raises(ImageError, match="larger than the 1.0 MB upload limit"):
        imaging.check_upload_size(1024 * 1024 + 1, max_bytes=1024 * 1024)


def test_ui_reads_the_configured_upload_limit_from_streamlit(monkeypatch):
    import streamlit as st

    from ui import common

    monkeypatch.setattr(st, "get_option", lambda name: {"server.maxUploadSize": 7}[name])
    assert common.max_upload_megabytes() == 7
    assert common.max_upload_bytes() == 7 * 1024 * 1024


def test_file_too_large_message_names_both_sizes():
    message = imaging.file_too_large_message(5 * 1024 * 1024, 1024 * 1024)
    assert "5.0 MB" in message and "1.0 MB" in message
