"""invdn.io decode/encode: decoding keeps what matters (orientation, alpha, bit depth, ICC, EXIF), refuses bad files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import png16
from PIL import Image, ImageCms, ImageOps

from invdn.io.atomic import current_umask, write_atomic
from invdn.io.decode import decode_image, read_image_header
from invdn.io.encode import encode_image
from invdn.io.errors import CorruptImage, ImageTooLarge, UnsupportedImage
from invdn.io.formats import sniff_format

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
ALPHA8 = RNG.integers(0, 256, (24, 32), dtype=np.uint8)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _save(array: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _to16(pixels: np.ndarray) -> np.ndarray:
    return np.rint(pixels * 65535).astype(np.uint16)


def _to8(pixels: np.ndarray) -> np.ndarray:
    return np.rint(pixels * 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP"])
def test_sniff_format_and_header_without_decoding(fmt: str) -> None:
    data = _save(RGB8, fmt)
    assert sniff_format(data[:16]) == fmt
    # the header is enough: a file cut after its header still reports its size
    assert read_image_header(data) == (fmt, 32, 24)


def test_sniff_rejects_text() -> None:
    assert sniff_format(b"hello world, not an image") is None
    with pytest.raises(UnsupportedImage, match="not a supported image"):
        decode_image(b"hello world, not an image")


@pytest.mark.parametrize("side", [32, 300])  # a small file, and one longer than the 64 KiB read at once
def test_header_from_path_reads_only_the_header(tmp_path: Path, side: int) -> None:
    data = _save(RNG.integers(0, 256, (side, side + 8, 3), dtype=np.uint8), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * 0.9)])  # the pixel data is cut, the header is whole
    assert read_image_header(path) == ("JPEG", side + 8, side)
    with pytest.raises(CorruptImage, match="truncated"):
        decode_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP"])
@pytest.mark.parametrize("fraction", [0.5, 0.95])
def test_truncated_files_are_errors_not_partial_images(fmt: str, fraction: float) -> None:
    data = _save(RGB8, fmt)
    with pytest.raises(CorruptImage):
        decode_image(data[: int(len(data) * fraction)])


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height RGB pixels whose data holds almost nothing."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_cap_checked_on_header_before_decoding() -> None:
    # 120 MP claimed, a few bytes of data: refused from the header alone (decoding would need 360 MB)
    claimed = _png_header_only(12000, 10000)
    assert read_image_header(claimed) == ("PNG", 12000, 10000)
    with pytest.raises(ImageTooLarge, match="over the limit"):
        decode_image(claimed, max_pixels=50_000_000)
    with pytest.raises(ImageTooLarge):  # beyond Pillow's own bomb limit: ImageTooLarge too, even uncapped
        decode_image(_png_header_only(30000, 30000))
    small = _save(RGB8, "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(small, max_pixels=32 * 24 - 1)
    assert decode_image(small, max_pixels=32 * 24).pixels.shape == (24, 32, 3)


def test_rgb8_png_round_trip_is_exact() -> None:
    image = decode_image(_save(RGB8, "PNG"))
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (24, 32, 3)
    assert (image.bit_depth, image.mode, image.format, image.alpha) == (8, "RGB", "PNG", None)
    np.testing.assert_array_equal(_to8(image.pixels), RGB8)
    again = decode_image(encode_image(image, image.pixels))
    np.testing.assert_array_equal(_to8(again.pixels), RGB8)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_read_and_written_at_16_bits(channels: int) -> None:
    samples = RNG.integers(0, 65536, (9, 13, channels), dtype=np.uint16)
    image = decode_image(png16(samples))
    colour = 1 if channels <= 2 else 3
    assert image.bit_depth == 16 and image.channels == colour
    np.testing.assert_array_equal(_to16(image.pixels), samples[..., :colour])
    if channels in (2, 4):
        assert image.alpha is not None and image.alpha.dtype == np.uint16
        np.testing.assert_array_equal(image.alpha, samples[..., -1])
    written = encode_image(image, image.pixels, format="png")
    # Pillow alone reads our 16-bit output too (keeping the high byte of colour files)
    plain = np.asarray(Image.open(io.BytesIO(written)))
    if channels == 1:
        np.testing.assert_array_equal(plain, samples[..., 0])
    elif channels >= 3:
        np.testing.assert_array_equal(plain[..., :3], (samples[..., :3] >> 8).astype(np.uint8))
    again = decode_image(written)
    assert again.bit_depth == 16
    np.testing.assert_array_equal(_to16(again.pixels), samples[..., :colour])
    if channels in (2, 4):
        np.testing.assert_array_equal(again.alpha, samples[..., -1])


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_tiff_read_and_written_at_16_bits(channels: int) -> None:
    samples = RNG.integers(0, 65536, (9, 13, channels), dtype=np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        samples if channels > 1 else samples[..., 0],
        photometric="rgb" if channels > 1 else "minisblack",
        extrasamples=["unassalpha"] if channels == 4 else None,
        compression="zlib",
        metadata=None,
    )
    image = decode_image(buffer.getvalue())
    colour = 1 if channels == 1 else 3
    assert image.bit_depth == 16 and image.format == "TIFF"
    np.testing.assert_array_equal(_to16(image.pixels), samples[..., :colour])
    written = encode_image(image, image.pixels, format="tiff")
    back = tifffile.imread(io.BytesIO(written))  # an independent reader
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back.reshape(samples.shape), samples)


def test_16bit_grey_alpha_tiff_round_trip() -> None:
    samples = RNG.integers(0, 65536, (5, 7, 2), dtype=np.uint16)
    image = decode_image(png16(samples))
    again = decode_image(encode_image(image, image.pixels, format="tiff"))
    assert (again.bit_depth, again.channels) == (16, 1)
    np.testing.assert_array_equal(_to16(again.pixels), samples[..., :1])
    np.testing.assert_array_equal(again.alpha, samples[..., 1])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_and_reset(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    data = _save(RGB8, "PNG", exif=exif.tobytes())
    image = decode_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    np.testing.assert_array_equal(_to8(image.pixels), expected)
    assert image.exif is not None
    kept = Image.Exif()
    kept.load(image.exif)
    assert kept[0x0112] == 1 and kept[0x010F] == "TestCam"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff"])
def test_icc_and_exif_kept_on_output(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    image = decode_image(_save(RGB8, "JPEG", exif=exif.tobytes(), icc_profile=SRGB_ICC, quality=95))
    assert image.pixels.shape == (32, 24, 3)  # rotated by the orientation
    out = Image.open(io.BytesIO(encode_image(image, image.pixels, format=fmt)))
    assert out.size == (24, 32)
    assert out.info.get("icc_profile") == SRGB_ICC
    written = out.getexif()
    assert written.get(0x010F) == "TestCam" and written.get(0x0112, 1) == 1


def test_alpha_split_off_and_put_back_untouched() -> None:
    rgba = np.dstack([RGB8, ALPHA8])
    image = decode_image(_save(rgba, "PNG"))
    assert image.channels == 3 and image.alpha is not None and image.alpha.dtype == np.uint8
    np.testing.assert_array_equal(image.alpha, ALPHA8)
    changed = 1.0 - image.pixels  # any denoised colour: the alpha must come back exactly
    for fmt in ("png", "tiff", "webp"):
        out = np.asarray(Image.open(io.BytesIO(encode_image(image, changed, format=fmt))))
        assert out.shape == (24, 32, 4)
        np.testing.assert_array_equal(out[..., 3], ALPHA8)
    with pytest.raises(UnsupportedImage, match="alpha"):
        encode_image(image, changed, format="jpeg")


def test_grey_stays_grey() -> None:
    grey = RGB8[..., 0]
    for fmt in ("PNG", "JPEG", "TIFF"):
        image = decode_image(_save(grey, fmt))
        assert image.channels == 1 and image.mode == "L"
        assert Image.open(io.BytesIO(encode_image(image, image.pixels))).mode == "L"
    grey16 = (RGB8[..., 0].astype(np.uint16) * 257 + 3).astype(np.uint16)
    image = decode_image(_save(grey16, "PNG"))
    assert (image.channels, image.bit_depth, image.mode) == (1, 16, "I;16")
    out = Image.open(io.BytesIO(encode_image(image, image.pixels)))
    assert out.mode.startswith("I;16")
    np.testing.assert_array_equal(np.asarray(out), grey16)


def test_palette_gif_becomes_rgb_png() -> None:
    palette = Image.fromarray(RGB8).quantize(16)
    buffer = io.BytesIO()
    palette.save(buffer, format="GIF")
    image = decode_image(buffer.getvalue())
    assert (image.mode, image.format, image.channels, image.alpha) == ("P", "GIF", 3, None)
    np.testing.assert_array_equal(_to8(image.pixels), np.asarray(palette.convert("RGB")))
    data = encode_image(image, image.pixels)  # format keep: GIF is written as PNG
    assert sniff_format(data) == "PNG" and Image.open(io.BytesIO(data)).mode == "RGB"


def test_palette_with_transparency_keeps_it_as_alpha() -> None:
    palette = Image.fromarray(RGB8).quantize(8)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=0)
    image = decode_image(buffer.getvalue())
    assert image.alpha is not None
    np.testing.assert_array_equal(image.alpha, np.where(np.asarray(palette) == 0, 0, 255))


def test_cmyk_jpeg_converted_to_rgb() -> None:
    cmyk = Image.fromarray(RGB8).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)
    image = decode_image(buffer.getvalue())
    assert image.mode == "CMYK" and image.channels == 3 and image.icc_profile is None


def test_write_image_atomic_never_clobbers(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "out.png"
    write_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second")
    assert target.read_bytes() == b"first"
    write_atomic(target, b"third", overwrite=True)
    assert target.read_bytes() == b"third"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]  # no temporary file left


def test_umask_is_read_without_being_changed():
    import os

    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # still the same: nothing changed it
    finally:
        os.umask(old)
