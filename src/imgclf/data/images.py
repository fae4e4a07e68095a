"""Check one image file before it may enter the split: decodable, complete, sane size, right format.

What passes is what training reads (keras' image_dataset_from_directory: JPEG, PNG, BMP, GIF):
JPEG, PNG and BMP files stay as they are unless they must change; GIF (first frame), WebP and TIFF
become PNG, and so do BMPs in a grayscale set (TensorFlow decodes BMP to RGB only). A file
changes when its EXIF orientation is not upright (it is rotated to how it is meant to be seen)
or, in a colour set, when it is not RGB (grayscale, CMYK, palette, alpha): converted to RGB
(`data.non_rgb: convert`) or skipped (`skip`). `predict` and the served model run the same check
(imgclf.data.decode).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Extension -> the Pillow format its content must have.
FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP",
    ".tif": "TIFF", ".tiff": "TIFF",
}
# Pillow opens camera JPEGs that carry a second picture (stereo, depth) as "MPO": still a JPEG.
SAME_FORMAT = {"MPO": "JPEG"}
KEPT_FORMATS = {"JPEG", "PNG", "BMP"}  # written back in their own format; the others become PNG
EXIF_ORIENTATION = 0x0112


def max_file_bytes(max_pixels: int) -> int:
    """A file larger than this cannot hold an image within data.max_image_pixels (4 bytes a pixel)."""
    return max_pixels * 4 + (1 << 20)


@dataclass(frozen=True)
class Checked:
    """An image that passed (the bytes to write, original or re-encoded, and their suffix), or why not."""

    data: bytes | None
    width: int = 0
    height: int = 0
    reason: str = ""  # non-empty: skipped, and why
    converted: bool = False  # changed to RGB
    rotated: bool = False  # turned upright by its EXIF orientation
    suffix: str = ""  # the written file's extension: the original's, or .png when re-encoded as PNG


def _kept_as_is(image: Image.Image, rgb: bool) -> bool:
    """A JPEG needing neither an EXIF turn nor an RGB conversion (read before decoding)."""
    return image.getexif().get(EXIF_ORIENTATION, 1) in (0, 1) and not (rgb and image.mode != "RGB")


def check(name: str | None, data: bytes, *, rgb: bool, non_rgb: str, max_pixels: int) -> Checked:
    """Validate `data` (file `name`): decode fully, compare format to extension, apply EXIF and RGB rules.

    name None (bytes without a file name, as served requests send them): the content's format
    must be one of FORMATS'. rgb: the set is colour, so grayscale/CMYK/palette/alpha images are
    converted to RGB (non_rgb="convert") or skipped (non_rgb="skip").
    """
    suffix = "." + name.rsplit(".", 1)[-1].lower() if name and "." in name else ""
    if not data:
        return Checked(None, reason="empty file")
    if name is not None and suffix not in FORMATS:
        return Checked(None, reason=f"not an image file name ({suffix or 'no extension'})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                return Checked(None, reason=f"too large to decode safely ({width}x{height})")
            fmt = SAME_FORMAT.get(image.format, image.format)
            if name is None:
                suffix = next((key for key, value in FORMATS.items() if value == fmt), "")
                if not suffix:
                    return Checked(None, reason=f"{image.format} images are not read (formats: {', '.join(sorted(set(FORMATS.values())))})")
            if fmt != FORMATS[suffix]:
                return Checked(None, reason=f"content is {image.format}, name says {suffix}")
            if fmt == "JPEG" and _kept_as_is(image, rgb):
                # Written byte for byte, so decoding only validates it: every coefficient is still
                # entropy-decoded (truncated or corrupt data fails as in a full decode), while the
                # inverse DCT runs at 1/8 scale (a third of the time).
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()  # decode (the first frame of an animation): catches truncated and corrupt data
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own guard (~89 Mpixels) fires inside open(), before our max_pixels check.
        return Checked(None, reason=f"too large to decode safely ({str(error)[:60]})")
    except UnidentifiedImageError:
        return Checked(None, reason="not a decodable image")
    except (OSError, SyntaxError, ValueError) as error:
        return Checked(None, reason=f"corrupt or truncated ({str(error)[:60]})")
    rotated = image.getexif().get(EXIF_ORIENTATION, 1) not in (0, 1)
    if rotated:
        image = ImageOps.exif_transpose(image)
        width, height = image.size
    needs_rgb = rgb and image.mode != "RGB"
    if needs_rgb and non_rgb == "skip":
        return Checked(None, reason=f"not RGB (mode {image.mode})")
    # TensorFlow decodes BMP to 3 or 4 channels only: a grayscale set's BMPs become PNG.
    kept = fmt in KEPT_FORMATS and not (fmt == "BMP" and not rgb)
    if not (needs_rgb or rotated or not kept):
        return Checked(data, width, height, suffix=suffix)
    if needs_rgb:
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA", "L", "LA", "P", "I;16", "1"):
        image = image.convert("RGB")  # e.g. CMYK in a grayscale set: PNG cannot hold it
    out_format = fmt if kept else "PNG"
    buffer = io.BytesIO()
    image.save(buffer, format=out_format, **({"quality": 95} if out_format == "JPEG" else {}))
    out_suffix = suffix if out_format == fmt else ".png"
    return Checked(buffer.getvalue(), width, height, converted=needs_rgb, rotated=rotated, suffix=out_suffix)
