"""Turn uploaded bytes into the RGB image every model sees, by documented rules, refusing what is too big
before it is decoded.

Rules (README, "Uploads"):
- The format is read from the content, never the file name: JPEG, PNG, WebP, GIF, BMP and TIFF.
- Only the first frame of an animated GIF, WebP or multi-page TIFF is used.
- The EXIF orientation is applied, so the image is upright as a viewer shows it.
- Transparency is composited over white; palette images are expanded first.
- 16-bit and 32-bit integer greyscale is scaled to 8 bits (0..65535 -> 0..255, rounded);
  floating-point greyscale is read as 0..1 when its values lie there, else as 0..255, clipped.
- CMYK, greyscale, bilevel and YCbCr images are converted to RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
               "BMP": "image/bmp", "TIFF": "image/tiff"}


@dataclass(frozen=True)
class ImageHeader:
    format: str  # one of ACCEPTED_FORMATS
    width: int  # as stored, before the EXIF orientation
    height: int
    mode: str  # PIL's mode of the first frame, e.g. "RGB", "CMYK", "I;16"
    frames: int


def read_header(data: bytes, max_bytes: int, max_pixels: int) -> ImageHeader:
    """Check the size limits and the format from the header alone: nothing is decoded yet."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the file is {len(data):,} bytes; the limit is {max_bytes:,} (upload_max_bytes)",
                              bytes=len(data), limit=max_bytes)
    if not data:
        raise InvalidInput("the file is empty (0 bytes)")
    with _opened(data) as image:
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise PayloadTooLarge(f"the image is {image.width} x {image.height} = {pixels:,} pixels; the limit is "
                                  f"{max_pixels:,} (upload_max_pixels)", pixels=pixels, limit=max_pixels)
        return ImageHeader(format=image.format, width=image.width, height=image.height, mode=image.mode,
                           frames=getattr(image, "n_frames", 1))


def decode_rgb(data: bytes, max_pixels: int) -> Image.Image:
    """The upright RGB image of `data` by the rules above. Corrupt or truncated data: 422."""
    with _opened(data) as image:
        if image.width * image.height > max_pixels:
            raise PayloadTooLarge(f"the image has more than {max_pixels:,} pixels (upload_max_pixels)")
        try:
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return to_rgb(upright)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # what PIL raises for damaged data
            raise InvalidInput(f"the {image.format} image cannot be decoded: {exc}", format=image.format) from None


def to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode.startswith("I"):  # "I", "I;16", "I;16B", ...: 16 or 32-bit integers
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")
    elif mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


class _opened:
    """`Image.open` on bytes, limited to the accepted formats, with PIL's own decompression-bomb guard
    turned into our 413 and anything unrecognised into a 415."""

    def __init__(self, data: bytes):
        self.data = data

    def __enter__(self) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                self.image = Image.open(io.BytesIO(self.data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"the image is too large to decode safely: {exc}") from None
        except UnidentifiedImageError:
            raise UnsupportedMediaType("the file is not an image in an accepted format "
                                       f"({', '.join(ACCEPTED_FORMATS)})", accepted=list(ACCEPTED_FORMATS)) from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise InvalidInput(f"the image header cannot be read: {exc}") from None
        if self.image.format not in ACCEPTED_FORMATS:
            found = self.image.format
            self.image.close()
            raise UnsupportedMediaType(f"{found} images are not accepted; use {', '.join(ACCEPTED_FORMATS)}",
                                       format=found, accepted=list(ACCEPTED_FORMATS))
        return self.image

    def __exit__(self, *exc_info) -> None:
        self.image.close()
