"""Encoding denoised pixels as an image file that keeps what the source file said about itself.

`encode_image` writes PNG, JPEG, WebP, TIFF or BMP bytes with the source's alpha, ICC profile, EXIF, resolution,
grey/colour and (PNG, TIFF) 16-bit depth. 16-bit PNGs are written here directly (Pillow cannot write 16-bit
colour), 16-bit TIFFs through tifffile. What each format can hold comes from `invdn.io.formats`.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from invdn.io.decode import LoadedImage
from invdn.io.errors import UnsupportedImage
from invdn.io.formats import ALPHA_PHRASE, BY_NAME, output_format


def check_writable(img: LoadedImage, format: str = "keep") -> str:
    """The format `encode_image(img, ..., format)` writes; UnsupportedImage when it cannot be written or cannot
    hold the image's alpha (checked before any work is done on the image)."""
    fmt = output_format(img.format, format)
    if img.alpha is not None and not BY_NAME[fmt].alpha:
        raise UnsupportedImage(f"{fmt} cannot store the alpha channel; choose {ALPHA_PHRASE}")
    return fmt


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

    `format` is "keep" (the source format; GIF becomes PNG) or a writable format's name. Alpha, ICC profile, EXIF,
    resolution and grey/colour are carried over from `img`; PNG and TIFF keep 16-bit sources at 16 bits.
    A source with alpha cannot become a JPEG: that raises UnsupportedImage rather than drop the alpha.
    """
    fmt = check_writable(img, format)
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"pixels must be (H, W, 1) or (H, W, 3), got {pixels.shape}")
    if img.alpha is not None and img.alpha.shape != pixels.shape[:2]:
        raise ValueError(f"pixels {pixels.shape[:2]} and alpha {img.alpha.shape} differ in size")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be within 1-100, got {quality}")
    sixteen = img.bit_depth == 16 and BY_NAME[fmt].sixteen_bit
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
    if img.icc_profile and BY_NAME[fmt].metadata:
        options["icc_profile"] = img.icc_profile
    if img.exif and BY_NAME[fmt].metadata:
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
