"""Decoding image files: float pixels in [0, 1] plus what the file says about itself, and nothing partial.

`decode_image` turns PNG, JPEG, WebP, TIFF, GIF or BMP bytes (or a path) into float32 pixels (EXIF orientation
applied, alpha split off untouched, 16-bit kept at 16 bits, palettes expanded) plus the metadata that
`invdn.io.encode` needs to write the result back the same way. Size caps are checked on the header, before any
pixel is decoded; `read_image_header` reads only the header. `decode_uint8` is the same decoder for datasets:
8-bit samples, grey or RGB.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from invdn.io.errors import CorruptImage, ImageTooLarge, UnsupportedImage
from invdn.io.formats import READABLE_PHRASE, SNIFF_BYTES, sniff_format

Source = bytes | bytearray | memoryview | str | os.PathLike[str]  # an image file's bytes, or its path

_EXIF_ORIENTATION = 0x0112
# tifffile (the fallback for TIFF layouts Pillow cannot open) logs about damaged files we report ourselves.
logging.getLogger("tifffile").addHandler(logging.NullHandler())


@dataclass
class LoadedImage:
    """Decoded pixels plus everything needed to write the result back in the same kind of file."""

    pixels: np.ndarray  # float32 (H, W, C) in [0, 1], C = 1 (grey) or 3 (RGB), EXIF orientation applied
    alpha: np.ndarray | None  # (H, W) alpha in its original dtype (uint8/uint16), untouched; None if opaque
    bit_depth: int  # bits per sample of the source: 8 or 16
    mode: str  # the source's PIL mode, e.g. "RGB", "P", "I;16", "RGBA"
    format: str  # the source format: PNG, JPEG, WEBP, TIFF, GIF or BMP
    icc_profile: bytes | None  # the embedded ICC profile, None when absent or meaningless after conversion
    exif: bytes | None  # EXIF block ("Exif\0\0" + TIFF data) with orientation reset to 1; None when absent
    dpi: tuple[float, float] | None = None  # resolution from the file, when it states one

    @property
    def width(self) -> int:
        """Width in pixels, after orientation."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels, after orientation."""
        return int(self.pixels.shape[0])

    @property
    def channels(self) -> int:
        """Colour channels: 1 grey, 3 RGB (alpha not counted)."""
        return int(self.pixels.shape[2])


@dataclass
class _Samples:
    """Decoded integer samples and the file's metadata: a LoadedImage before its conversion to float."""

    samples: np.ndarray  # uint8 or uint16 (H, W, C), C = 1 or 3, EXIF orientation applied
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    format: str
    icc_profile: bytes | None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None


def _open(data: bytes) -> Image.Image:
    """Open image bytes lazily (header only), mapping Pillow's failures to ImageError."""
    if not data:
        raise CorruptImage("empty file")
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        raise UnsupportedImage(f"not a supported image: content is not {READABLE_PHRASE} (starts with {data[:8]!r})")
    return _open_checked(io.BytesIO(data), fmt)


def _open_checked(stream: BinaryIO, fmt: str) -> Image.Image:
    """Image.open restricted to `fmt`, with Pillow's failures mapped to ImageError."""
    try:
        return Image.open(stream, formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise CorruptImage(f"damaged {fmt} file: its header cannot be read") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise CorruptImage(f"damaged {fmt} header: {exc}") from exc


def _tiff_fallback(data: bytes, max_pixels: int | None) -> _Samples | None:
    """Decode a TIFF layout Pillow cannot open (e.g. 16-bit grey + alpha) with tifffile, or None."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages[0]
            height, width = int(page.imagelength), int(page.imagewidth)
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLarge(f"{width}x{height} = {width * height / 1e6:.1f} MP is over the limit")
            ok = page.photometric in (0, 1, 2) and page.bitspersample in (8, 16) and page.dtype is not None
            if not ok or page.dtype.kind != "u":
                return None
            array = page.asarray()
            icc = page.tags.valueof(34675)
    except (tifffile.TiffFileError, ValueError, OSError, KeyError, IndexError, struct.error, zlib.error):
        return None
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[:2] != (height, width) or array.shape[2] not in (1, 2, 3, 4):
        return None
    if page.photometric == 0:  # min-is-white grey
        array[..., :1] = np.iinfo(array.dtype).max - array[..., :1]
    colour = 1 if array.shape[2] <= 2 else 3
    alpha = array[..., colour].copy() if array.shape[2] in (2, 4) else None
    bit_depth = 16 if array.dtype == np.uint16 else 8
    return _Samples(
        samples=array[..., :colour],
        alpha=alpha,
        bit_depth=bit_depth,
        mode={1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]] + (";16" if bit_depth == 16 else ""),
        format="TIFF",
        icc_profile=bytes(icc) if icc else None,
    )


def read_image_header(data: Source) -> tuple[str, int, int]:
    """(format, width, height) as stored in the header (before EXIF orientation), decoding no pixel.

    `data` is the file's bytes or a path; from a path only the header is read.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        image = _open(bytes(data))
    else:
        with open(data, "rb") as stream:
            head = stream.read(64 * 1024)
            if len(head) == 64 * 1024:  # a long file: let Pillow read the header lazily from the file
                image = _open_stream(stream, head)
            else:
                image = _open(head)
    try:
        width, height = image.size
        return str(image.format), int(width), int(height)
    finally:
        image.close()


def _open_stream(stream: BinaryIO, head: bytes) -> Image.Image:
    """Open an image file stream lazily (header only); `head` is its first bytes, already read."""
    fmt = sniff_format(head[:SNIFF_BYTES])
    if fmt is None:
        return _open(head)  # raises UnsupportedImage with the usual message
    stream.seek(0)
    return _open_checked(stream, fmt)


def _load(image: Image.Image, fmt: str) -> None:
    """Decode the pixels, turning a truncated or damaged file into CorruptImage."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to accept partial images")
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError) as exc:
        raise CorruptImage(f"truncated or damaged {fmt} data: {exc}") from exc


def _swap_endian_rawmode(rawmode: str) -> str | None:
    """The raw mode reading the other byte of each 16-bit sample ("RGB;16B" <-> "RGB;16L"), or None."""
    if rawmode.endswith(";16N"):
        rawmode = rawmode[:-1] + ("L" if sys.byteorder == "little" else "B")
    if rawmode.endswith(";16B"):
        return rawmode[:-1] + "L"
    if rawmode.endswith(";16L"):
        return rawmode[:-1] + "B"
    return None


def _with_rawmode(data: bytes, rawmode: str, fmt: str) -> np.ndarray:
    """Decode `data` with every tile's raw mode replaced, as an 8-bit array."""
    image = Image.open(io.BytesIO(data), formats=[fmt])
    tiles = []
    for tile in image.tile:
        args = tile.args
        args = (rawmode, *args[1:]) if isinstance(args, tuple) else rawmode
        tiles.append(tile._replace(args=args))
    image.tile = tiles
    _load(image, fmt)
    return np.asarray(image)


def _decode_16bit_colour(data: bytes, image: Image.Image, rawmode: str | None, fmt: str) -> np.ndarray | None:
    """Full 16-bit samples of a loaded 16-bit RGB(A) PNG/TIFF that Pillow cut to 8 bits, or None.

    Pillow unpacks such files by keeping the high byte of each sample; decoding twice, once keeping the
    high byte and once the low byte (same decompression and unfiltering), gives back every bit.
    """
    if image.mode not in ("RGB", "RGBA") or rawmode is None:
        return None
    if rawmode == "LA;16B":  # 16-bit grey + alpha PNG, opened as RGBA: read its 4 bytes per pixel verbatim
        raw = _with_rawmode(data, "RGBA", fmt).astype(np.uint16)
        return np.stack([(raw[..., 0] << 8) | raw[..., 1], (raw[..., 2] << 8) | raw[..., 3]], axis=-1)
    other = _swap_endian_rawmode(rawmode)
    if other is None:
        return None
    high = np.asarray(image).astype(np.uint16)  # already decoded with the high-byte raw mode
    low = _with_rawmode(data, other, fmt)
    high <<= 8
    high |= low
    return high


def _tile_rawmode(image: Image.Image) -> str | None:
    """The raw mode Pillow will decode the first tile with (read before `load`, which clears the tiles)."""
    args = image.tile[0].args if image.tile else None
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return rawmode if isinstance(rawmode, str) else None


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as a viewer would display it."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _to_float(samples: np.ndarray, max_value: float) -> np.ndarray:
    """Integer samples (H, W, C) as float32 in [0, 1], converted in row blocks to bound the temporaries."""
    out = np.empty(samples.shape, dtype=np.float32)
    scale = np.float32(1.0 / max_value)
    for start in range(0, samples.shape[0], 256):
        block = out[start : start + 256]
        np.multiply(samples[start : start + 256], scale, out=block, dtype=np.float32)
    return out


def _read_bytes(source: Source) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except IsADirectoryError as exc:
        raise UnsupportedImage(f"{source} is a folder, not an image") from exc


def decode_image(source: Source, max_pixels: int | None = None) -> LoadedImage:
    """Decode an image file (bytes or a path) into float pixels plus its metadata.

    The pixel count is checked against `max_pixels` on the header, before decoding. Raises ImageTooLarge,
    UnsupportedImage or CorruptImage (all ImageError, a ValueError); a truncated file is an error, never a
    partial image. Animated files give their first frame.
    """
    decoded = _decode_samples(_read_bytes(source), max_pixels)
    pixels = _to_float(decoded.samples, 65535.0 if decoded.bit_depth == 16 else 255.0)
    return LoadedImage(
        pixels=pixels,
        alpha=decoded.alpha,
        bit_depth=decoded.bit_depth,
        mode=decoded.mode,
        format=decoded.format,
        icc_profile=decoded.icc_profile,
        exif=decoded.exif,
        dpi=decoded.dpi,
    )


def decode_uint8(source: Source, grey: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file into (H, W, C) uint8 samples: C = 3 (grey replicated), or C = 1 when `grey`.

    What datasets read. EXIF orientation is applied and alpha dropped, as `decode_image` does; 16-bit samples are
    rounded to 8 bits; `grey` turns colour into luma exactly as Pillow's "L" conversion does (ITU-R 601-2).
    """
    decoded = _decode_samples(_read_bytes(source), max_pixels)
    samples = decoded.samples
    if decoded.bit_depth == 16:
        samples = np.clip(np.rint(samples / 257.0), 0, 255).astype(np.uint8)
    if grey and samples.shape[2] == 3:
        wide = samples.astype(np.uint32)
        luma = wide[..., 0] * 19595 + wide[..., 1] * 38470 + wide[..., 2] * 7471 + 0x8000
        return (luma >> 16).astype(np.uint8)[..., None]
    if not grey and samples.shape[2] == 1:
        return np.repeat(samples, 3, axis=2)
    return np.ascontiguousarray(samples)


def _decode_samples(data: bytes, max_pixels: int | None) -> _Samples:
    """The integer samples and metadata of an image file's bytes (see `decode_image`)."""
    try:
        image = _open(data)
    except CorruptImage:
        fallback = _tiff_fallback(data, max_pixels) if sniff_format(data[:SNIFF_BYTES]) == "TIFF" else None
        if fallback is None:
            raise
        return fallback
    fmt = str(image.format)
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} = {width * height / 1e6:.1f} MP is over the limit of {max_pixels / 1e6:.1f} MP"
        )
    source_mode = image.mode
    rawmode = _tile_rawmode(image)
    sixteen = source_mode.startswith("I;16") or (rawmode is not None and ";16" in rawmode)
    _load(image, fmt)
    icc = image.info.get("icc_profile") or None
    dpi = image.info.get("dpi")
    exif = image.getexif()
    orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    has_exif = len(exif) > 0 or bool(image.info.get("exif"))

    wide = _decode_16bit_colour(data, image, rawmode, fmt) if sixteen and source_mode in ("RGB", "RGBA") else None
    alpha: np.ndarray | None
    if wide is not None:
        colour_channels = 1 if wide.shape[-1] == 2 else 3
        samples, alpha = wide[..., :colour_channels], None
        if wide.shape[-1] in (2, 4):
            alpha = wide[..., -1].copy()
        bit_depth = 16
    else:
        samples, alpha, bit_depth, icc = _samples_from_pil(image, icc)
    image.close()
    del wide

    samples = _orient(samples, orientation)
    if alpha is not None:
        alpha = np.ascontiguousarray(_orient(alpha, orientation))

    exif_bytes: bytes | None = None
    if has_exif:
        if _EXIF_ORIENTATION in exif:
            exif[_EXIF_ORIENTATION] = 1
        exif_bytes = exif.tobytes()
    return _Samples(
        samples=samples,
        alpha=alpha,
        bit_depth=bit_depth,
        mode=source_mode,
        format=fmt,
        icc_profile=icc,
        exif=exif_bytes,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi else None,
    )


def _samples_from_pil(image: Image.Image, icc: bytes | None) -> tuple[np.ndarray, np.ndarray | None, int, bytes | None]:
    """(samples (H, W, C) uint8/uint16, alpha or None, bit depth, ICC still valid) for a loaded PIL image."""
    mode = image.mode
    if mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.uint16, copy=False)
        return grey[..., None], None, 16, icc
    if mode in ("I", "F"):
        raise UnsupportedImage(f"{'32-bit integer' if mode == 'I' else 'floating-point'} images are not supported")
    if mode in ("LAB", "HSV"):
        raise UnsupportedImage(f"{mode} colour images are not supported")
    has_transparency = "transparency" in image.info
    if mode in ("P", "PA"):
        target = "RGBA" if mode == "PA" or has_transparency else "RGB"
    elif mode == "1":
        target = "L"
    elif mode in ("L", "LA", "La"):
        target = "LA" if mode != "L" or has_transparency else "L"
    elif mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        target = "RGBA" if mode in ("RGBA", "RGBa") or (mode == "RGB" and has_transparency) else "RGB"
    elif mode in ("CMYK", "YCbCr"):
        target = "RGB"
        icc = None  # a CMYK/YCbCr profile does not describe the converted RGB values
    else:
        raise UnsupportedImage(f"PIL mode {mode} is not supported")
    converted = image if image.mode == target else image.convert(target)
    array = np.asarray(converted)
    if converted is not image:
        converted.close()
    if target in ("LA", "RGBA"):
        return array[..., :-1], array[..., -1].copy(), 8, icc
    return (array[..., None] if array.ndim == 2 else array), None, 8, icc
