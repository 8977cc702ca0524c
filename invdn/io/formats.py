"""The image formats this program reads and writes: one table, and everything derived from it.

Each `ImageFormat` says how a format is recognised (file name extensions, first bytes), how it is served (media
type) and what it can hold (alpha, 16 bits, ICC/EXIF). The batch planner, the training datasets, the CLI's
`--format` choices, the encoder and the REST service all read this table instead of keeping their own lists.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from invdn.io.errors import UnsupportedImage


@dataclass(frozen=True)
class ImageFormat:
    """One image format: how it is recognised and what it can hold."""

    name: str  # Pillow's name: PNG, JPEG, ...
    label: str  # as people write it in messages: PNG, JPEG, WebP, ...
    extensions: tuple[str, ...]  # lower-case, with the dot; the first one is written for outputs
    media_type: str  # HTTP Content-Type
    signature: re.Pattern[bytes]  # matches the first bytes of a file of this format
    aliases: tuple[str, ...] = ()  # other names accepted for it (upper case): JPG for JPEG
    readable: bool = True
    writable: bool = True  # False: a "keep" output of such a source is written as `written_as`
    written_as: str | None = None  # the format a "keep" output is written in when this one is not writable
    unwritable_because: str = ""  # why it is not writable, for messages
    alpha: bool = True  # can store an alpha channel
    sixteen_bit: bool = False  # the encoder keeps 16-bit sources at 16 bits
    metadata: bool = True  # the encoder carries ICC profile and EXIF over

    @property
    def extension(self) -> str:
        """The extension written for this format (".png", ".jpg", ...)."""
        return self.extensions[0]


FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat(
        name="PNG",
        label="PNG",
        extensions=(".png",),
        media_type="image/png",
        signature=re.compile(rb"\x89PNG\r\n\x1a\n"),
        sixteen_bit=True,
    ),
    ImageFormat(
        name="JPEG",
        label="JPEG",
        extensions=(".jpg", ".jpeg", ".jpe"),
        media_type="image/jpeg",
        signature=re.compile(rb"\xff\xd8\xff"),
        aliases=("JPG",),
        alpha=False,
    ),
    ImageFormat(
        name="WEBP",
        label="WebP",
        extensions=(".webp",),
        media_type="image/webp",
        signature=re.compile(rb"RIFF.{4}WEBP", re.DOTALL),
    ),
    ImageFormat(
        name="TIFF",
        label="TIFF",
        extensions=(".tif", ".tiff"),
        media_type="image/tiff",
        signature=re.compile(rb"II\*\x00|MM\x00\*|II\+\x00|MM\x00\+"),
        aliases=("TIF",),
        sixteen_bit=True,
    ),
    ImageFormat(
        name="GIF",
        label="GIF",
        extensions=(".gif",),
        media_type="image/gif",
        signature=re.compile(rb"GIF8[79]a"),
        writable=False,
        written_as="PNG",  # lossless, as a GIF is
        unwritable_because="a palette cannot hold a denoised photo",
    ),
    ImageFormat(
        name="BMP",
        label="BMP",
        extensions=(".bmp",),
        media_type="image/bmp",
        signature=re.compile(rb"BM.{12}", re.DOTALL),  # a BMP file header is 14 bytes
        metadata=False,
    ),
)

BY_NAME: dict[str, ImageFormat] = {entry.name: entry for entry in FORMATS}
READABLE: tuple[str, ...] = tuple(entry.name for entry in FORMATS if entry.readable)
WRITABLE: tuple[str, ...] = tuple(entry.name for entry in FORMATS if entry.writable)
# Every file name extension of a readable format (lower case, with the dot).
READ_EXTENSIONS: frozenset[str] = frozenset(ext for entry in FORMATS if entry.readable for ext in entry.extensions)
# `invdn denoise --format`: keep, then every writable format by name and alias (lower case).
CLI_FORMAT_CHOICES: tuple[str, ...] = ("keep",) + tuple(
    name.lower() for entry in FORMATS if entry.writable for name in (entry.name, *entry.aliases)
)
# The REST service names formats in lower case: the formats it accepts and the outputs it can return.
SERVICE_INPUT_FORMATS: tuple[str, ...] = tuple(name.lower() for name in READABLE)
SERVICE_OUTPUT_FORMATS: tuple[str, ...] = ("keep",) + tuple(name.lower() for name in WRITABLE)
# Media types of the files written (what the service may answer with), sorted.
OUTPUT_MEDIA_TYPES: tuple[str, ...] = tuple(sorted({entry.media_type for entry in FORMATS if entry.writable}))
_EXTENSIONS: dict[str, str] = {ext: entry.name for entry in FORMATS for ext in entry.extensions}
_ALIASES: dict[str, str] = {alias: entry.name for entry in FORMATS for alias in entry.aliases}
SNIFF_BYTES = 16  # how many leading bytes `sniff_format` needs


def _spoken(names: list[str]) -> str:
    """Names as a phrase: "a, b, c or d"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


READABLE_PHRASE = _spoken([entry.label for entry in FORMATS if entry.readable])  # "PNG, JPEG, WebP, TIFF, GIF or BMP"
# The writable formats that can store alpha: "png, webp, tiff or bmp".
ALPHA_PHRASE = _spoken([entry.name.lower() for entry in FORMATS if entry.writable and entry.alpha])


def normalize_format(name: str) -> str:
    """Upper-case format name with aliases resolved (jpg -> JPEG, tif -> TIFF); unknown names pass unchanged."""
    upper = name.strip().upper()
    return _ALIASES.get(upper, upper)


def lookup(name: str) -> ImageFormat:
    """The table entry of a format name or alias; UnsupportedImage for anything else."""
    try:
        return BY_NAME[normalize_format(name)]
    except KeyError:
        raise UnsupportedImage(f"unknown image format {name!r}; known: {', '.join(BY_NAME)}") from None


def format_for_path(path: str | os.PathLike[str]) -> str | None:
    """The format a file name's extension stands for, or None."""
    return _EXTENSIONS.get(Path(path).suffix.lower())


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether a file name has the extension of a readable image format."""
    return Path(path).suffix.lower() in READ_EXTENSIONS


def extension(name: str) -> str:
    """The extension written for a format name or alias (".png", ".jpg", ...)."""
    return lookup(name).extension


def media_type(name: str) -> str:
    """The media type of a format name or alias ("image/png", ...)."""
    return lookup(name).media_type


def output_format(source_format: str, requested: str = "keep") -> str:
    """The format written for a source format and a requested one ("keep" keeps it; GIF becomes PNG).

    UnsupportedImage when the result cannot be written.
    """
    fmt = normalize_format(source_format if requested.lower() == "keep" else requested)
    entry = BY_NAME.get(fmt)
    if entry is not None and not entry.writable and entry.written_as is not None:
        return entry.written_as
    if entry is None or not entry.writable:
        choices = _spoken([name.lower() for name in WRITABLE])
        raise UnsupportedImage(f"cannot write format {requested!r}; choose one of {choices}")
    return fmt


def sniff_format(head: bytes) -> str | None:
    """The format named by the first bytes of a file (SNIFF_BYTES are enough), or None when none matches."""
    for entry in FORMATS:
        if entry.readable and entry.signature.match(head):
            return entry.name
    return None
