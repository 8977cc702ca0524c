"""Reading and writing images for denoising, keeping what the file says about itself.

`decode_image` turns PNG, JPEG, WebP, TIFF, GIF or BMP bytes into float32 pixels in [0, 1] (EXIF orientation
applied, alpha split off untouched, 16-bit kept at 16 bits, palettes expanded) plus the metadata needed to
write the result back the same way: `encode_image` puts alpha, ICC profile, EXIF, bit depth and grey/colour
back. Size caps are checked on the header, before any pixel is decoded. `write_image_atomic` never leaves a
partial file behind.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP")
OUTPUT_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
# File name extension -> format, and the extension written for each output format.
EXTENSION_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
    ".bmp": "BMP",
}
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
TEMP_SUFFIX = ".invdn-tmp"  # temporary files of `write_image_atomic` end with this

_EXIF_ORIENTATION = 0x0112
_FORMATS_WITHOUT_ALPHA = ("JPEG",)


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status); elsewhere the set-and-restore
    idiom, which briefly changes it for every thread, so only there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask

# tifffile (the fallback for TIFF layouts Pillow cannot open) logs about damaged files we report ourselves.
logging.getLogger("tifffile").addHandler(logging.NullHandler())


class ImageError(ValueError):
    """An image that cannot be denoised; the message says why in one line."""


class UnsupportedImage(ImageError):
    """Not an image, or an image kind this program does not handle."""


class CorruptImage(ImageError):
    """An image whose data is truncated or damaged."""


class ImageTooLarge(ImageError):
    """An image with more pixels than allowed."""


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


def sniff_format(head: bytes) -> str | None:
    """The image format named by the first bytes of a file, or None when it is none of the supported ones."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 14:
        return "BMP"
    return None


def normalize_format(name: str) -> str:
    """Upper-case format name with aliases resolved (jpg -> JPEG, tif -> TIFF)."""
    upper = name.strip().upper()
    return FORMAT_ALIASES.get(upper, upper)


def format_for_path(path: str | os.PathLike[str]) -> str | None:
    """The format a file name's extension stands for, or None."""
    return EXTENSION_FORMATS.get(Path(path).suffix.lower())


def output_format(source_format: str, requested: str = "keep") -> str:
    """The format written for a source format and a requested one ("keep" keeps it; GIF becomes PNG)."""
    fmt = normalize_format(source_format) if requested.lower() == "keep" else normalize_format(requested)
    if fmt == "GIF":
        return "PNG"  # a palette cannot hold a denoised photo; PNG keeps it lossless
    if fmt not in OUTPUT_FORMATS:
        raise UnsupportedImage(f"cannot write format {requested!r}; choose one of png, jpeg, webp, tiff")
    return fmt


def _open(data: bytes) -> Image.Image:
    """Open image bytes lazily (header only), mapping Pillow's failures to ImageError."""
    if not data:
        raise CorruptImage("empty file")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise UnsupportedImage(
            f"not a supported image: content is not PNG, JPEG, WebP, TIFF, GIF or BMP (starts with {data[:8]!r})"
        )
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


def _tiff_fallback(data: bytes, max_pixels: int | None) -> LoadedImage | None:
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
    return LoadedImage(
        pixels=_to_float(array[..., :colour], 65535.0 if bit_depth == 16 else 255.0),
        alpha=alpha,
        bit_depth=bit_depth,
        mode={1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]] + (";16" if bit_depth == 16 else ""),
        format="TIFF",
        icc_profile=bytes(icc) if icc else None,
        exif=None,
    )


def read_image_header(data: bytes | bytearray | memoryview | str | os.PathLike[str]) -> tuple[str, int, int]:
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
    fmt = sniff_format(head[:16])
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


def _read_bytes(source: bytes | bytearray | memoryview | str | os.PathLike[str]) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except IsADirectoryError as exc:
        raise UnsupportedImage(f"{source} is a folder, not an image") from exc


def decode_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str], max_pixels: int | None = None
) -> LoadedImage:
    """Decode an image file (bytes or a path) into float pixels plus its metadata.

    The pixel count is checked against `max_pixels` on the header, before decoding. Raises ImageTooLarge,
    UnsupportedImage or CorruptImage (all ImageError, a ValueError); a truncated file is an error, never a
    partial image. Animated files give their first frame.
    """
    data = _read_bytes(source)
    try:
        image = _open(data)
    except CorruptImage:
        fallback = _tiff_fallback(data, max_pixels) if sniff_format(data[:16]) == "TIFF" else None
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
    pixels = _to_float(samples, 65535.0 if bit_depth == 16 else 255.0)
    del samples

    exif_bytes: bytes | None = None
    if has_exif:
        if _EXIF_ORIENTATION in exif:
            exif[_EXIF_ORIENTATION] = 1
        exif_bytes = exif.tobytes()
    return LoadedImage(
        pixels=pixels,
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


def _quantize(pixels: np.ndarray, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """Float pixels in [0, 1] as rounded integers of `dtype`, in row blocks to bound the temporaries."""
    max_value = float(np.iinfo(dtype).max)
    out = np.empty(pixels.shape, dtype=dtype)
    for start in range(0, pixels.shape[0], 256):
        block = np.clip(pixels[start : start + 256], 0.0, 1.0) * np.float32(max_value)
        np.rint(block, out=block)
        out[start : start + 256] = block
    return out


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encode_png16(samples: np.ndarray, icc: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by channel count) with ICC, EXIF and resolution."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    parts = [
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)),
    ]
    if icc:
        parts.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        per_metre = [round(value / 0.0254) for value in dpi]
        parts.append(_png_chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
    if exif:
        parts.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    compressor = zlib.compressobj(6)
    stream = []
    row_bytes = width * channels * 2
    previous = np.zeros(row_bytes, dtype=np.uint8)
    for start in range(0, height, 64):
        block = samples[start : start + 64].astype(">u2").reshape(-1, width * channels).view(np.uint8)
        # filter type 2 ("Up"): each byte minus the byte above it, modulo 256
        above = np.concatenate([previous[None], block[:-1]], axis=0)
        filtered = np.empty((block.shape[0], row_bytes + 1), dtype=np.uint8)
        filtered[:, 0] = 2
        np.subtract(block, above, out=filtered[:, 1:])
        previous = block[-1].copy()
        stream.append(compressor.compress(filtered.tobytes()))
    stream.append(compressor.flush())
    parts.append(_png_chunk(b"IDAT", b"".join(stream)))
    parts.append(_png_chunk(b"IEND", b""))
    return b"".join(parts)


def _encode_tiff16(samples: np.ndarray, icc: bytes | None, dpi: tuple[float, float] | None) -> bytes:
    """A 16-bit deflate-compressed TIFF with its ICC profile (tifffile cannot write an EXIF block)."""
    import tifffile

    channels = samples.shape[2]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        samples if channels > 1 else samples[..., 0],
        photometric="rgb" if channels >= 3 else "minisblack",
        extrasamples=["unassalpha"] if channels in (2, 4) else None,
        compression="zlib",
        iccprofile=icc,
        resolution=dpi,
        resolutionunit="inch" if dpi else None,
        metadata=None,
    )
    return buffer.getvalue()


def encode_image(img: LoadedImage, pixels: np.ndarray, format: str = "keep", quality: int = 95) -> bytes:
    """Encode denoised `pixels` (shaped like `img.pixels`) as the bytes of an image file.

    `format` is "keep" (the source format; GIF becomes PNG) or png/jpeg/webp/tiff. Alpha, ICC profile, EXIF,
    resolution and grey/colour are carried over from `img`; PNG and TIFF keep 16-bit sources at 16 bits.
    A source with alpha cannot become a JPEG: that raises UnsupportedImage rather than drop the alpha.
    """
    fmt = output_format(img.format, format)
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"pixels must be (H, W, 1) or (H, W, 3), got {pixels.shape}")
    if img.alpha is not None and img.alpha.shape != pixels.shape[:2]:
        raise ValueError(f"pixels {pixels.shape[:2]} and alpha {img.alpha.shape} differ in size")
    if img.alpha is not None and fmt in _FORMATS_WITHOUT_ALPHA:
        raise UnsupportedImage(f"{fmt} cannot store the alpha channel; choose png, webp or tiff")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be within 1-100, got {quality}")
    sixteen = img.bit_depth == 16 and fmt in ("PNG", "TIFF")
    dtype = np.uint16 if sixteen else np.uint8
    samples = _quantize(pixels, dtype)
    if img.alpha is not None:
        alpha = img.alpha
        if alpha.dtype != dtype:
            alpha = (
                np.rint(alpha.astype(np.float32) / 257.0).astype(np.uint8)
                if dtype == np.uint8
                else alpha.astype(np.uint16) * 257
            )
        samples = np.concatenate([samples, alpha[..., None]], axis=2)

    if sixteen and fmt == "PNG":
        return _encode_png16(samples, img.icc_profile, img.exif, img.dpi)
    if sixteen:
        return _encode_tiff16(samples, img.icc_profile, img.dpi)

    picture = Image.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples)
    options: dict[str, object] = {}
    if img.icc_profile and fmt != "BMP":
        options["icc_profile"] = img.icc_profile
    if img.exif and fmt != "BMP":
        options["exif"] = img.exif
    if img.dpi:
        options["dpi"] = img.dpi
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "WEBP":
        options.update(quality=quality)
    elif fmt == "TIFF":
        options.update(compression="tiff_adobe_deflate")
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_image_atomic(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> None:
    """Write `data` to `path` through a temporary file in the same folder, so no partial file ever exists.

    Without `overwrite`, an existing file is left alone and FileExistsError raised (also when another writer
    creates it meanwhile). Missing parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists (not overwriting)")
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, 0o666 & ~current_umask())
        if overwrite:
            os.replace(temp_name, target)
        else:
            try:
                os.link(temp_name, target)  # fails if the target appeared meanwhile: never clobbers
            except FileExistsError:
                raise
            except OSError:  # file systems without hard links
                if target.exists():
                    raise FileExistsError(f"{target} exists (not overwriting)") from None
                os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
