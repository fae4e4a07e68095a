"""Build dogs-vs-cats archives for tests: real photos, generated JPEGs, and every known kind of bad file.

Real photos: skimage's chelsea (a cat) and scikit-learn's two sample photos, downscaled so the
archives stay small. Bad files are crafted cheaply (a PNG header declaring 30000x30000 is 60 bytes).
"""

from __future__ import annotations

import functools
import io
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_SIDE = 96


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    """The image's bytes in `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def real_photos() -> tuple[Image.Image, ...]:
    """Three real RGB photos (a cat, a Chinese temple, a flower), downscaled."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    arrays = [data.chelsea(), *load_sample_images().images]
    return tuple(Image.fromarray(array).resize((PHOTO_SIDE, PHOTO_SIDE)) for array in arrays)


def photo_jpeg(index: int) -> bytes:
    """A distinct real-photo JPEG per index: a real photo, cropped and shifted by `index`."""
    photos = real_photos()
    base = np.asarray(photos[index % len(photos)])
    shifted = np.roll(base, shift=index * 7, axis=(0, 1))
    return encode(Image.fromarray(shifted), quality=85)


def generated_jpeg(index: int, side: int = 40) -> bytes:
    """A generated RGB JPEG, distinct per index."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 255, size=(side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), quality=80)


def good_jpeg(index: int) -> bytes:
    """Alternate real photos and generated images."""
    return photo_jpeg(index) if index % 2 == 0 else generated_jpeg(index)


# --- bad files: each returns bytes, and BAD_FILES says what the split must report ---------


def corrupt_jpeg() -> bytes:
    """PetImages-style corruption: the JPEG's header bytes are gone (no SOI/JFIF)."""
    data = bytearray(photo_jpeg(0))
    data[:16] = b"\x00" * 16
    return bytes(data)


def broken_stream_jpeg() -> bytes:
    """A JPEG with noise written over its entropy-coded data."""
    data = bytearray(photo_jpeg(1))
    noise = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    middle = len(data) // 4
    data[middle:middle + len(noise)] = noise
    return bytes(data)


def truncated_jpeg() -> bytes:
    """The first half of a real JPEG."""
    data = photo_jpeg(2)
    return data[: len(data) // 2]


def text_named_jpg() -> bytes:
    """Not an image at all."""
    return b"<html><body>403 Forbidden</body></html>\n" * 4


def png_named_jpg() -> bytes:
    """A valid PNG whose name says .jpg."""
    return encode(real_photos()[0], "PNG")


def grayscale_jpeg() -> bytes:
    """A real photo saved as a one-channel JPEG."""
    return encode(real_photos()[1].convert("L"), quality=85)


def cmyk_jpeg() -> bytes:
    """A real photo saved as a CMYK JPEG (as some scanners and Photoshop write them)."""
    return encode(real_photos()[2].convert("CMYK"), quality=85)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_png(side: int = 30_000) -> bytes:
    """A decompression bomb's header: an RGB PNG declaring side x side pixels, ~70 bytes on disk."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")
    )


def huge_jpeg(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to declare width x height."""
    data = bytearray(generated_jpeg(3, side=16))
    marker = data.find(b"\xff\xc0")
    data[marker + 5:marker + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@dataclass(frozen=True)
class Bad:
    """A bad file, the name it gets in the archive, and the reason the split must give."""

    key: str
    make: callable
    reason: str  # a fragment of the reason in metrics/split.json
    extension: str = "jpg"


BAD_FILES = (
    Bad("zero-byte", lambda: b"", "empty file"),
    Bad("corrupt-header", corrupt_jpeg, "not a decodable image"),
    Bad("broken-stream", broken_stream_jpeg, "corrupt or truncated"),
    Bad("truncated", truncated_jpeg, "corrupt or truncated"),
    Bad("text-as-jpg", text_named_jpg, "not a decodable image"),
    Bad("png-as-jpg", png_named_jpg, "content is PNG, name says .jpg"),
    Bad("bomb-png-30000", huge_png, "too large to decode safely", "png"),
    Bad("bomb-jpeg-30000", lambda: huge_jpeg(30_000, 30_000), "too large to decode safely"),
    Bad("huge-jpeg-8000", lambda: huge_jpeg(8_000, 8_000), "too large to decode safely (8000x8000)"),
    Bad("not-an-image-name", lambda: b"PSD\x00", "not an image file name (.psd)", "psd"),
)
NON_RGB = (("grayscale", grayscale_jpeg, "L"), ("cmyk", cmyk_jpeg, "CMYK"))
JUNK = {
    "train/Thumbs.db": b"\xd0\xcf\x11\xe0" + b"\x00" * 60,
    "__MACOSX/train/._cat.0.jpg": b"\x00\x05\x16\x07" + b"\x00" * 60,
    "train/.DS_Store": b"\x00\x00\x00\x01Bud1",
}


# --- archives ------------------------------------------------------------------------------


def write_zip(path: Path, files: dict[str, bytes], *, symlinks: dict[str, str] | None = None,
              compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip holding `files` (name -> bytes), plus symlink entries (name -> link target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix, so external_attr holds st_mode
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w") -> Path:
    """A tar holding `files` (name -> bytes) in the dict's order; `mode` "w:gz", "w:bz2", "w:xz" compresses it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def kaggle_files(cats: int, dogs: int, start: int = 0) -> dict[str, bytes]:
    """Kaggle's train.zip layout: train/cat.N.jpg, train/dog.N.jpg."""
    files = {f"train/cat.{start + n}.jpg": good_jpeg(start + n) for n in range(cats)}
    files |= {f"train/dog.{start + n}.jpg": good_jpeg(10_000 + start + n) for n in range(dogs)}
    return files


def petimages_files(cats: int, dogs: int) -> dict[str, bytes]:
    """Microsoft's PetImages layout, with its Thumbs.db files."""
    files = {f"PetImages/Cat/{n}.jpg": good_jpeg(n) for n in range(cats)}
    files |= {f"PetImages/Dog/{n}.jpg": good_jpeg(20_000 + n) for n in range(dogs)}
    files["PetImages/Cat/Thumbs.db"] = JUNK["train/Thumbs.db"]
    files["PetImages/Dog/Thumbs.db"] = JUNK["train/Thumbs.db"]
    return files


def bad_entry_name(bad: Bad, number: int) -> str:
    """Where a bad file sits in a Kaggle-layout archive: it poses as a cat."""
    return f"train/cat.{number}.{bad.extension}"


def corrupt_member(path: Path, name: str) -> None:
    """Flip bytes inside one stored member's data, so reading it fails its CRC check."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    data = bytearray(path.read_bytes())
    header = info.header_offset
    name_length, extra_length = struct.unpack("<HH", data[header + 26:header + 30])
    start = header + 30 + name_length + extra_length + info.compress_size // 2
    data[start:start + 8] = bytes(255 - byte for byte in data[start:start + 8])
    path.write_bytes(bytes(data))


def encrypt_flag(path: Path, name: str) -> None:
    """Mark one member as encrypted (general-purpose bit 0), as a password-protected zip does."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    data = bytearray(path.read_bytes())
    data[info.header_offset + 6] |= 0x1
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_length = struct.unpack("<H", data[central + 28:central + 30])[0]
        if data[central + 46:central + 46 + name_length].decode() == name:
            data[central + 8] |= 0x1
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
