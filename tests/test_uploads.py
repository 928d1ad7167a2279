"""Uploads: every accepted format decodes to the RGB image the documented rules promise; every malformed
or oversized file is refused with its own error before anything is stored; the store deduplicates and
survives a restart."""

from __future__ import annotations

import io
import sqlite3
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from app.uploads.decode import decode_rgb, read_header
from app.uploads.store import UploadStore

LIMIT_BYTES, LIMIT_PIXELS = 1_000_000, 40_000_000


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 8, height: int = 6) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x * 255 // width, y * 255 // height, x * 0 + 90], axis=-1).astype(np.uint8))


def pixels(data: bytes) -> np.ndarray:
    image = decode_rgb(data, LIMIT_PIXELS)
    assert image.mode == "RGB"
    return np.asarray(image)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_decode_exactly(fmt):
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(gradient(), fmt, **options)
    assert read_header(data, LIMIT_BYTES, LIMIT_PIXELS).format == fmt
    assert np.array_equal(pixels(data), np.asarray(gradient()))


def test_jpeg_decodes_close_to_the_original():
    data = encode(gradient(64, 48), "JPEG", quality=95)
    assert np.abs(pixels(data).astype(int) - np.asarray(gradient(64, 48))).mean() < 3


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert read_header(data, LIMIT_BYTES, LIMIT_PIXELS).frames == 2
    assert (pixels(data) == [255, 0, 0]).all()


def test_multipage_tiff_uses_the_first_page():
    pages = [Image.new("RGB", (4, 4), colour) for colour in ((0, 200, 0), (9, 9, 9))]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert (pixels(data) == [0, 200, 0]).all()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))  # top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display it turned 90 degrees clockwise
    upright = pixels(encode(image, "PNG", exif=exif))
    assert upright.shape == (4, 2, 3)  # 2 wide, 4 high
    assert (upright[0, 1] == 255).all()  # top left moves to top right


def test_alpha_is_composited_over_white():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 128))
    out = pixels(encode(rgba, "PNG"))
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent: white
    assert out[0, 1].tolist() == [255, 127, 127]  # half red over white


def test_palette_with_transparency_is_composited_over_white():
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((1, 0), 1)
    out = pixels(encode(palette, "PNG", transparency=0))
    assert out[0].tolist() == [[255, 255, 255], [10, 20, 30]]


def test_greyscale_and_bilevel_become_grey_rgb():
    grey = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8), mode="L")
    assert pixels(encode(grey, "PNG"))[0].tolist() == [[0, 0, 0], [100, 100, 100], [255, 255, 255]]
    assert (pixels(encode(grey.convert("1"), "BMP"))[0, 0] == 0).all()


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits():
    deep = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16))
    out = pixels(encode(deep, "PNG"))
    assert out[0, :, 0].tolist() == [0, 100, 255] and (out[0, :, 1] == out[0, :, 0]).all()


def test_float_greyscale_in_zero_to_one_is_scaled():
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert pixels(encode(floats, "TIFF"))[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_becomes_rgb():
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    out = pixels(encode(cmyk, "JPEG", quality=100))
    assert out[..., 0].min() > 240 and out[..., 1:].max() < 15


def test_zero_bytes_is_an_invalid_file():
    with pytest.raises(InvalidInput, match="empty"):
        read_header(b"", LIMIT_BYTES, LIMIT_PIXELS)


def test_truncated_image_is_an_invalid_file():
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG")
    read_header(data[: len(data) // 2], LIMIT_BYTES, LIMIT_PIXELS)  # the header is intact
    with pytest.raises(InvalidInput, match="cannot be decoded"):
        decode_rgb(data[: len(data) // 2], LIMIT_PIXELS)


def test_corrupt_image_data_is_an_invalid_file():
    data = bytearray(encode(gradient(32, 32), "PNG"))
    data[60:80] = b"\x00" * 20  # inside the compressed pixel data
    with pytest.raises(InvalidInput):
        decode_rgb(bytes(data), LIMIT_PIXELS)


@pytest.mark.parametrize("data", [b"hello, this is text", b"%PDF-1.4\n" + b"0" * 100, bytes(range(256))])
def test_non_images_are_unsupported(data):
    with pytest.raises(UnsupportedMediaType, match="not an image"):
        read_header(data, LIMIT_BYTES, LIMIT_PIXELS)


def test_images_in_other_formats_are_unsupported_by_name():
    with pytest.raises(UnsupportedMediaType, match="ICO images are not accepted"):
        read_header(encode(gradient(16, 16), "ICO"), LIMIT_BYTES, LIMIT_PIXELS)


def test_a_file_over_the_byte_limit_is_too_large():
    data = encode(gradient(), "PNG")
    with pytest.raises(PayloadTooLarge, match="upload_max_bytes"):
        read_header(data, len(data) - 1, LIMIT_PIXELS)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: enough for a decoder to allocate, nothing to decode."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width,height", [(10_000, 5_000), (100_000, 100_000)],
                         ids=["over-the-setting", "a-decompression-bomb"])
def test_too_many_pixels_is_refused_from_the_header(width, height):
    with pytest.raises(PayloadTooLarge, match="pixels|too large"):
        read_header(png_header_only(width, height), LIMIT_BYTES, LIMIT_PIXELS)
    with pytest.raises(PayloadTooLarge):
        decode_rgb(png_header_only(width, height), LIMIT_PIXELS)


def test_the_store_deduplicates_and_survives_a_restart(tmp_path):
    data = encode(gradient(), "PNG")
    store = UploadStore(tmp_path / "uploads", LIMIT_BYTES, LIMIT_PIXELS)
    first, new = store.add(data)
    again, new_again = store.add(data)
    assert new and not new_again and again == first
    assert first.format == "PNG" and (first.width, first.height) == (8, 6)
    reopened = UploadStore(tmp_path / "uploads", LIMIT_BYTES, LIMIT_PIXELS)
    assert reopened.get(first.id) == first
    assert reopened.data(first.id) == data
    assert np.array_equal(np.asarray(reopened.image(first.id)), np.asarray(gradient()))


def test_the_store_forgets_file_names_an_older_version_kept(tmp_path):
    """Ids are shared by everyone who uploads the same bytes: a name kept by an older version (the first
    uploader's) is erased when the store opens, and never read."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    with sqlite3.connect(folder / "uploads.sqlite") as db:
        db.execute("CREATE TABLE uploads (id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, format TEXT NOT NULL, mode TEXT "
                   "NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, frames INTEGER NOT NULL, bytes INTEGER "
                   "NOT NULL, name TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID")
        db.execute("INSERT INTO uploads VALUES (?, ?, 'PNG', 'RGB', 8, 6, 1, 99, 'alice-private.png', 1.5)",
                   ("0" * 20, "0" * 64))
    db.close()
    store = UploadStore(folder, LIMIT_BYTES, LIMIT_PIXELS)
    assert "alice" not in repr(store.get("0" * 20).as_dict())
    with sqlite3.connect(folder / "uploads.sqlite") as db:
        assert db.execute("SELECT name, created FROM uploads").fetchall() == [("", 1.5)]
    db.close()


def test_the_store_keeps_nothing_it_refused(tmp_path):
    store = UploadStore(tmp_path / "uploads", LIMIT_BYTES, LIMIT_PIXELS)
    for data in (b"", b"not an image", encode(gradient(64, 64), "JPEG")[:200]):
        with pytest.raises((InvalidInput, UnsupportedMediaType)):
            store.add(data)
    assert all(p.name.startswith("uploads.sqlite") for p in (tmp_path / "uploads").rglob("*") if p.is_file())


@pytest.mark.parametrize("bad", ["../../etc/passwd", "0" * 19, "G" * 20, "0" * 20 + "/x", ""])
def test_ids_that_are_not_upload_ids_never_reach_a_path(tmp_path, bad):
    store = UploadStore(tmp_path / "uploads", LIMIT_BYTES, LIMIT_PIXELS)
    with pytest.raises(NotFound):
        store.get(bad)
    with pytest.raises(NotFound):
        store.path(bad)
