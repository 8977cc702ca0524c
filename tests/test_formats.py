"""invdn.io.formats is the one table of image formats: the planner, the datasets, the encoder, the CLI and the
service all follow it; and invdn.io.decode is the one reader, bit-identical to Pillow on 8-bit files."""

from __future__ import annotations

import io
import typing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from invdn.batch.plan import PlanRequest, build_plan
from invdn.io import formats
from invdn.io.decode import decode_image, decode_uint8
from invdn.io.encode import check_writable, encode_image
from invdn.io.errors import UnsupportedImage
from invdn.training.data import list_images, read_image

RNG = np.random.default_rng(3)
RGB8 = RNG.integers(0, 256, (20, 28, 3), dtype=np.uint8)
LOSSLESS = {"PNG", "TIFF", "BMP", "GIF"}


def _file_bytes(fmt: str, array: np.ndarray = RGB8) -> bytes:
    """A file of `fmt` made by Pillow (lossless WebP, so its pixels are exact too)."""
    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _one_file_per_extension(folder: Path) -> set[str]:
    folder.mkdir(parents=True)
    names = set()
    for index, extension in enumerate(sorted(formats.READ_EXTENSIONS)):
        name = f"img{index}{extension.upper() if index % 2 else extension}"  # extensions match in any case
        (folder / name).write_bytes(_file_bytes(formats.BY_NAME[formats.format_for_path(name) or ""].name))
        names.add(name)
    (folder / "notes.txt").write_text("not an image")
    return names


def test_every_readable_extension_is_in_the_table_and_read() -> None:
    assert {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".tif", ".tiff", ".gif", ".bmp"} <= formats.READ_EXTENSIONS
    for extension in formats.READ_EXTENSIONS:
        fmt = formats.format_for_path(f"x{extension}")
        assert fmt is not None and formats.sniff_format(_file_bytes(fmt)[: formats.SNIFF_BYTES]) == fmt
        assert decode_image(_file_bytes(fmt)).format == fmt


def test_sniffing_needs_the_real_signature() -> None:
    assert formats.sniff_format(b"RIFF\x00\x00\x00\x00WAVE....") is None  # RIFF, but not WebP
    assert formats.sniff_format(b"BM") is None  # too short for a BMP header
    assert formats.sniff_format(b"hello world, not an image") is None


def test_batch_planner_finds_every_readable_extension(tmp_path: Path) -> None:
    names = _one_file_per_extension(tmp_path / "in")
    plan = build_plan(PlanRequest((str(tmp_path / "in"),), str(tmp_path / "out")))
    assert {job.source.name for job in plan.jobs if job.source is not None} == names


def test_training_dataset_finds_every_readable_extension(tmp_path: Path) -> None:
    names = _one_file_per_extension(tmp_path / "in")
    assert {path.name for path in list_images(tmp_path / "in")} == names
    for path in list_images(tmp_path / "in"):
        assert read_image(path).shape == (20, 28, 3)


@pytest.mark.parametrize("fmt", formats.WRITABLE)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_writable_format_round_trips(fmt: str, channels: int) -> None:
    rows, cols = np.mgrid[0:20, 0:28]
    smooth = np.dstack([rows * 12, cols * 9, rows * 5 + cols * 4]).astype(np.uint8)  # lossy codecs keep it close
    array = smooth if channels == 3 else smooth[..., 0]
    source = decode_image(_file_bytes("PNG", array))
    written = encode_image(source, source.pixels, format=fmt.lower())
    assert formats.sniff_format(written[: formats.SNIFF_BYTES]) == fmt
    back = decode_image(written)
    assert back.format == fmt and back.pixels.shape[:2] == source.pixels.shape[:2]
    pixels = back.pixels
    if fmt == "WEBP" and channels == 1:  # WebP has no grey mode: grey comes back as three equal channels
        assert np.abs(pixels - pixels[..., :1]).max() < 0.02
        pixels = pixels[..., :1]
    assert pixels.shape == source.pixels.shape
    error = np.abs(pixels - source.pixels).max()
    assert error == 0 if fmt in LOSSLESS else error < 0.1


def test_gif_is_read_and_written_as_png() -> None:
    gif = decode_image(_file_bytes("GIF", RGB8[..., 0]))
    assert gif.format == "GIF" and formats.output_format("GIF") == "PNG" and check_writable(gif) == "PNG"
    assert encode_image(gif, gif.pixels).startswith(b"\x89PNG")
    with pytest.raises(UnsupportedImage, match="png, jpeg, webp, tiff or bmp"):
        formats.output_format("PNG", "svg")


def test_alpha_refusal_follows_the_table() -> None:
    rgba = np.dstack([RGB8, RGB8[..., 0]])
    image = decode_image(_file_bytes("PNG", rgba))
    for fmt in formats.WRITABLE:
        if formats.BY_NAME[fmt].alpha:
            assert check_writable(image, fmt) == fmt
        else:
            with pytest.raises(UnsupportedImage, match="cannot store the alpha"):
                encode_image(image, image.pixels, format=fmt)


def test_names_extensions_and_media_types() -> None:
    assert formats.normalize_format(" jpg ") == "JPEG" and formats.normalize_format("tif") == "TIFF"
    assert formats.extension("jpeg") == ".jpg" and formats.extension("TIFF") == ".tif"
    assert formats.media_type("bmp") == "image/bmp" and formats.format_for_path("a/b.JPE") == "JPEG"
    with pytest.raises(UnsupportedImage):
        formats.lookup("svg")


def test_cli_format_choices_come_from_the_table() -> None:
    from invdn.cli.denoise import denoise

    option = next(param for param in denoise.params if param.name == "fmt")
    choices = tuple(option.type.choices)  # type: ignore[attr-defined]
    assert choices == formats.CLI_FORMAT_CHOICES and choices[0] == "keep"
    assert {name.lower() for name in formats.WRITABLE} <= set(choices) and "bmp" in choices
    assert "gif" not in choices


def test_service_formats_and_media_types_come_from_the_table() -> None:
    from invdn_service.config import Settings
    from invdn_service.jobs import DenoiseOutput
    from invdn_service.routes.denoise import IMAGE_RESPONSE
    from invdn_service.schemas import OutputFormat

    assert typing.get_args(OutputFormat) == formats.SERVICE_OUTPUT_FORMATS
    assert "bmp" in formats.SERVICE_OUTPUT_FORMATS and "gif" not in formats.SERVICE_OUTPUT_FORMATS
    assert Settings().allowed_formats == list(formats.SERVICE_INPUT_FORMATS)
    answered = set(IMAGE_RESPONSE["content"]) - {"application/json"}
    assert answered == set(formats.OUTPUT_MEDIA_TYPES) == {formats.media_type(name) for name in formats.WRITABLE}
    assert DenoiseOutput(b"", "JPEG", "image/jpeg", 0.0, 1, 1).extension == "jpg"


# ---------- one reader ----------


def _pil(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(ImageOps.exif_transpose(image).convert(mode))
    return array[..., None] if array.ndim == 2 else array


@pytest.mark.parametrize("name", ["rgb.png", "grey.png", "rgba.png", "rgb.jpg", "grey.jpg", "palette.png"])
def test_reader_is_bit_identical_to_pillow_on_8_bit_files(tmp_path: Path, name: str) -> None:
    photo = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image = {
        "rgb": Image.fromarray(photo),
        "grey": Image.fromarray(photo[..., 1]),
        "rgba": Image.fromarray(np.dstack([photo, photo[..., 0]])),
        "palette": Image.fromarray(photo).quantize(64),
    }[name.split(".")[0]]
    path = tmp_path / name
    image.save(path)
    for grey, mode in ((False, "RGB"), (True, "L")):
        ours = read_image(path, grey=grey)
        assert ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, _pil(path, mode))


def test_reader_applies_exif_orientation_like_pillow(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    path = tmp_path / "turned.jpg"
    Image.fromarray(RGB8).save(path, exif=exif.tobytes(), quality=95)
    np.testing.assert_array_equal(read_image(path), _pil(path, "RGB"))
    assert read_image(path).shape == (28, 20, 3)


def test_reader_rounds_16_bit_and_names_unreadable_files(tmp_path: Path) -> None:
    wide = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    np.testing.assert_array_equal(decode_uint8(path, grey=True)[..., 0], np.rint(wide / 257.0).astype(np.uint8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(_file_bytes("PNG")[:60])
    with pytest.raises(OSError, match="broken.png"):
        read_image(broken)
