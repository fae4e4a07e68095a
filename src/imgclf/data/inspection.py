"""`python -m imgclf inspect [PATH]`: a look at your images before training, and the params they suggest.

Classes and counts (with the imbalance ratio), image sizes, formats and colour modes, files that are not
images, exact duplicates within and across classes. Each file is read once — its bytes for the sha256 of
the duplicate check, and only its header for size, format and mode (no pixels are decoded): a truncated
image passes here and is caught by the split's full decode.
"""

from __future__ import annotations

import hashlib
import io
import json
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from PIL import Image, UnidentifiedImageError

from imgclf import paths
from imgclf.data import layout as layout_module
from imgclf.data import snapshot
from imgclf.params import SMALL_IMAGE_SIDE

GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "F"}
EXIF_IN_HEADER = ("JPEG", "MPO", "TIFF")
ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
IMBALANCED = 1.5  # largest class / smallest class above this: suggest balanced class weights
PHOTO_SIZE = [150, 150]  # the chapter's size for larger images
SMALLEST = 28  # small images are suggested at their own size, but not below the chapter's 28x28
SHOWN = 5  # examples listed per finding


@dataclass
class Findings:
    """What `inspect` found: JSON-ready."""

    path: str
    files: int = 0
    pre_split: bool = False
    classes: dict[str, int] = field(default_factory=dict)
    imbalance_ratio: float = 1.0
    width: dict[str, int] = field(default_factory=dict)  # min, median, max
    height: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    not_images: list[str] = field(default_factory=list)
    skipped: list[list[str]] = field(default_factory=list)  # [file, reason]: outside a class folder, system files
    duplicates_within_class: list[list[str]] = field(default_factory=list)  # each: the files with the same bytes
    duplicates_across_classes: list[list[str]] = field(default_factory=list)
    suggested: dict[str, object] = field(default_factory=dict)
    command: str = ""


def inspect(source: str, value: str, label_columns: tuple[str, ...] = ("label",)) -> Findings:
    """Read every file of `value` (a folder, an archive, or a CSV when `source` is csv) once."""
    members, labels = snapshot.members(source, value, label_columns)
    from_split = paths.user_path(value).resolve() == paths.user_path(str(paths.SPLIT)).resolve()
    if from_split:  # the split's own images: its manifest is no image
        members = [member for member in members if member.name != paths.MANIFEST.name]
    by_name = {member.name: member for member in members}
    layout = layout_module.from_labels(labels) if labels is not None else layout_module.from_names(by_name)
    skipped: list[list[str]] = []
    grouped: dict[str | None, dict[str, list[str]]] = {}  # split -> class -> files, in name order
    for name in sorted(by_name):
        place = layout.place(name)
        if isinstance(place, str):
            skipped.append([name, place])
        else:
            grouped.setdefault(place[0], defaultdict(list))[place[1]].append(name)
    skipped.sort(key=lambda item: not item[1].startswith("system file"))  # system files first, each group by name
    layout.check({split: set(classes) for split, classes in grouped.items()}, value)
    findings = Findings(path=value, pre_split=layout.pre_split, skipped=skipped)
    counts: Counter[str] = Counter()
    widths, heights, formats, modes = [], [], Counter(), Counter()
    holders: dict[str, list[tuple[str, str]]] = defaultdict(list)  # sha256 -> [(class, file)]
    for classes in grouped.values():
        for label, files in sorted(classes.items()):
            for name in files:
                data = by_name[name].read()
                holders[hashlib.sha256(data).hexdigest()].append((label, name))
                header = _header(data)
                if header is None:
                    findings.not_images.append(name)
                    continue
                counts[label] += 1
                width, height, image_format, mode = header
                widths.append(width)
                heights.append(height)
                formats[image_format] += 1
                modes[mode] += 1
    findings.files = sum(counts.values())
    findings.classes = dict(sorted(counts.items()))
    if counts:
        findings.imbalance_ratio = round(max(counts.values()) / min(counts.values()), 2)
        findings.width = _spread(widths)
        findings.height = _spread(heights)
    findings.formats = dict(formats.most_common())
    findings.modes = dict(modes.most_common())
    for group in holders.values():
        if len(group) > 1:
            files = sorted(name for _, name in group)
            target = findings.duplicates_across_classes if len({label for label, _ in group}) > 1 \
                else findings.duplicates_within_class
            target.append(files)
    findings.suggested = suggest(findings)
    findings.command = "" if from_split else command(source, value, findings.suggested)
    return findings


def _header(data: bytes) -> tuple[int, int, str, str] | None:
    """(width, height as shown, format, mode) from the image's header, or None when it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            # JPEG and TIFF keep EXIF in their header; PNG and WebP may keep it after the pixels: not read.
            if image.format in EXIF_IN_HEADER and image.getexif().get(0x0112) in ROTATED:
                width, height = height, width
            return width, height, image.format or "?", image.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def _spread(values: list[int]) -> dict[str, int]:
    return {"min": min(values), "median": int(statistics.median(values)), "max": max(values)}


def suggest(findings: Findings) -> dict[str, object]:
    """The params these images suggest: size and colour from the images, weights from the counts."""
    if not findings.files:
        return {}
    height, width = findings.height["median"], findings.width["median"]
    small = max(height, width) <= SMALL_IMAGE_SIDE
    size = [max(SMALLEST, height), max(SMALLEST, width)] if small else PHOTO_SIZE
    gray = sum(count for mode, count in findings.modes.items() if mode in GRAYSCALE_MODES)
    suggested: dict[str, object] = {
        "image.size": size,
        "image.color_mode": "grayscale" if gray == findings.files else "rgb",
        "cnn.layout": "chapter" if max(size) <= SMALL_IMAGE_SIDE else "photo",  # what auto resolves to
        "data.train_per_class": "all",
        "data.test_per_class": "all",
    }
    if not findings.pre_split:
        suggested["data.test_fraction"] = 0.2
    weight = "balanced" if findings.imbalance_ratio > IMBALANCED else "none"
    for stage in ("baseline", "augmented", "top", "finetune"):
        suggested[f"{stage}.class_weight"] = weight
    return suggested


def command(source: str, value: str, suggested: dict[str, object]) -> str:
    """The `dvc exp run -S …` line that trains on these images with the suggested params."""
    overrides = {"data.source": "csv" if source == "csv" else "folder", "data.path": value}
    overrides |= {key: item for key, item in suggested.items() if key != "cnn.layout" and item != "none"}
    return "dvc exp run " + " ".join(f"-S {key}={_spelled(item)}" for key, item in overrides.items())


def _spelled(value: object) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    text = str(value)
    return f"'{text}'" if any(char in text for char in " '\"$`\\;&|<>()*?") else text


def render(findings: Findings, output_format: str) -> str:
    """A report for people (table) or tools (json)."""
    if output_format == "json":
        return json.dumps(asdict(findings), indent=2) + "\n"
    lines = [f"{findings.path}: {findings.files:,} images in {len(findings.classes)} classes"
             + (" (pre-split: train/ and test/)" if findings.pre_split else "")]
    if findings.classes:
        width = max(map(len, findings.classes))
        lines += [f"  {name:<{width}}  {count:>7,}" for name, count in findings.classes.items()]
        lines.append(f"imbalance: largest / smallest class = {findings.imbalance_ratio:g}"
                     + (" (unbalanced)" if findings.imbalance_ratio > IMBALANCED else ""))
        lines.append("size (width x height): " + ", ".join(
            f"{which} {findings.width[which]}x{findings.height[which]}" for which in ("min", "median", "max")))
        lines.append("formats: " + ", ".join(f"{name} {count:,}" for name, count in findings.formats.items()))
        lines.append("colour modes: " + ", ".join(f"{name} {count:,}" for name, count in findings.modes.items()))
    lines += _listed("not images", findings.not_images)
    lines += _listed("skipped", [f"{name} ({reason})" for name, reason in findings.skipped])
    lines += _listed("duplicates within a class", [" = ".join(group) for group in findings.duplicates_within_class])
    lines += _listed("duplicates across classes (the split keeps the first)",
                     [" = ".join(group) for group in findings.duplicates_across_classes])
    if findings.suggested:
        lines += ["suggested params:", *(f"  {key}: {_spelled(value)}" for key, value in findings.suggested.items())]
        lines += [findings.command] if findings.command else []
    return "\n".join(lines) + "\n"


def _listed(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    more = f" (first {SHOWN})" if len(items) > SHOWN else ""
    return [f"{title}: {len(items):,}{more}", *(f"  {item}" for item in items[:SHOWN])]


def default_target(source: str, value: str) -> tuple[str, str]:
    """(source, path) to inspect when none is given: data.path for your own images, else the split."""
    if source in ("folder", "csv"):
        return source, value
    return "folder", str(paths.SPLIT)
