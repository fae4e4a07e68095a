"""Check one image file before it may enter the split: decodable, complete, sane size, right format."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Extension -> the Pillow format its content must have.
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}
# Pillow opens camera JPEGs that carry a second picture (stereo, depth) as "MPO": still a JPEG.
SAME_FORMAT = {"MPO": "JPEG"}


@dataclass(frozen=True)
class Checked:
    """An image that passed: the bytes to write (original or converted), its size, or why it failed."""

    data: bytes | None
    width: int = 0
    height: int = 0
    reason: str = ""  # non-empty: skipped, and why
    converted: bool = False


def check(name: str, data: bytes, *, rgb: bool, non_rgb: str, max_pixels: int) -> Checked:
    """Validate `data` (file `name`): decode fully, compare format to extension, enforce RGB policy.

    rgb: the set is colour, so grayscale/CMYK/palette images are converted to RGB JPEG
    (non_rgb="convert") or skipped (non_rgb="skip").
    """
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if not data:
        return Checked(None, reason="empty file")
    if suffix not in FORMATS:
        return Checked(None, reason=f"not an image file name ({suffix or 'no extension'})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                return Checked(None, reason=f"too large to decode safely ({width}x{height})")
            if SAME_FORMAT.get(image.format, image.format) != FORMATS[suffix]:
                return Checked(None, reason=f"content is {image.format}, name says {suffix}")
            image.load()  # full decode: catches truncated and corrupt data
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own guard (~89 Mpixels) fires inside open(), before our max_pixels check.
        return Checked(None, reason=f"too large to decode safely ({str(error)[:60]})")
    except UnidentifiedImageError:
        return Checked(None, reason="not a decodable image")
    except (OSError, SyntaxError, ValueError) as error:
        return Checked(None, reason=f"corrupt or truncated ({str(error)[:60]})")
    if not rgb or image.mode == "RGB":
        return Checked(data, width, height)
    if non_rgb == "skip":
        return Checked(None, reason=f"not RGB (mode {image.mode})")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=FORMATS[suffix], quality=95)
    return Checked(buffer.getvalue(), width, height, converted=True)
