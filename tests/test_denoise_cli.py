"""`invdn denoise`: a mixed folder with broken files, resume after SIGKILL, stdin/stdout, safety refusals."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import png16
from PIL import Image, ImageCms

from invdn.cli.denoise import denoise
from invdn.io.decode import decode_image

ROOT = Path(__file__).resolve().parent.parent
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
BROKEN = {"broken/truncated.jpg", "broken/notes.png"}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: INVDN_THREADS=1


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth colour picture plus noise, uint8 (H, W, 3)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(6 * x + 1), np.cos(5 * y), np.sin(4 * (x + y))], axis=-1) * 0.35 + 0.5
    return np.clip((base + rng.normal(0, 0.08, base.shape)) * 255, 0, 255).astype(np.uint8)


def make_mixed_folder(root: Path) -> dict[str, dict[str, object]]:
    """30 files in nested folders; returns, per relative path, what its output must look like."""
    rng = np.random.default_rng(0)
    expect: dict[str, dict[str, object]] = {}

    def put(rel: str, data: bytes, **props: object) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expect[rel] = props

    def encoded(array: np.ndarray, fmt: str, **options: object) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format=fmt, **options)
        return buffer.getvalue()

    for index in range(12):
        rel = f"plain/{'deep/' * (index % 3)}photo{index:02d}.png"
        put(rel, encoded(_photo(rng, 40, 56), "PNG"), size=(56, 40), mode="RGB")
    for index, orientation in enumerate((6, 8, 3)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x010F] = "TestCam"
        size = (40, 56) if orientation in (6, 8) else (56, 40)
        data = encoded(_photo(rng, 40, 56), "JPEG", exif=exif.tobytes(), icc_profile=SRGB_ICC, quality=92)
        put(f"camera/rotated{index}.jpg", data, size=size, mode="RGB", icc=True, exif=True)
    for index in range(3):
        put(f"camera/raw{index}.jpg", encoded(_photo(rng, 48, 32), "JPEG"), size=(32, 48), mode="RGB")
    for index in range(2):
        samples = rng.integers(0, 65536, (36, 44, 3), dtype=np.uint16)
        put(f"deep16/scan{index}.png", png16(samples), size=(44, 36), mode="RGB", bits=16)
    grey16 = (rng.integers(0, 65536, (30, 30))).astype(np.uint16)
    put("deep16/grey16.png", encoded(grey16, "PNG"), size=(30, 30), mode="I;16", bits=16)
    alpha = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    put("alpha/logo.png", encoded(np.dstack([_photo(rng, 40, 40), alpha]), "PNG"), size=(40, 40), mode="RGBA")
    put("alpha/logo.webp", encoded(np.dstack([_photo(rng, 40, 40), alpha]), "WEBP", lossless=True), size=(40, 40))
    put("grey/page.png", encoded(_photo(rng, 32, 48)[..., 1], "PNG"), size=(48, 32), mode="L")
    put("grey/page.jpg", encoded(_photo(rng, 32, 48)[..., 2], "JPEG"), size=(48, 32), mode="L")
    gif = io.BytesIO()
    Image.fromarray(_photo(rng, 24, 24)).quantize(32).save(gif, format="GIF")
    put("palette/icon.gif", gif.getvalue(), size=(24, 24), mode="RGB")
    put("other/scan.tif", encoded(_photo(rng, 28, 36), "TIFF"), size=(36, 28), mode="RGB")
    put("other/old.bmp", encoded(_photo(rng, 28, 36), "BMP"), size=(36, 28), mode="RGB")
    whole = encoded(_photo(rng, 64, 64), "JPEG")
    put("broken/truncated.jpg", whole[: len(whole) * 2 // 3])
    put("broken/notes.png", b"meeting notes, not a picture\n")
    (root / "broken" / "readme.txt").write_text("not an image extension: ignored")
    assert len(expect) == 30
    return expect


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _output_for(rel: str) -> str:
    return rel[: -len(".gif")] + ".png" if rel.endswith(".gif") else rel


def _run(args: list[str], stdin: bytes | None = None) -> tuple[int, str, bytes]:
    result = CliRunner().invoke(denoise, args, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr, result.stdout_bytes


def test_mixed_folder(tmp_path: Path, tiny_weights: Path) -> None:
    source, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "run.jsonl"
    expect = make_mixed_folder(source)
    before = _checksums(source)

    code, err, _ = _run([str(source), "-o", str(out), "--weights", str(tiny_weights), "--report", str(report)])

    assert code == 1, err
    assert _checksums(source) == before  # inputs untouched, nothing added next to them
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(lines) == 30
    status = {str(Path(line["input"]).relative_to(source)): line for line in lines}
    assert {rel for rel, line in status.items() if line["status"] == "failed"} == BROKEN
    assert all(set(line) >= {"input", "output", "status", "reason", "size", "seconds"} for line in lines)
    for rel in BROKEN:
        assert status[rel]["reason"] and str(source / rel) in err
    assert "truncated" in status["broken/truncated.jpg"]["reason"]
    assert "not a supported image" in status["broken/notes.png"]["reason"]
    assert "done 28, skipped 0, failed 2" in err

    produced = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert produced == sorted(_output_for(rel) for rel in expect if rel not in BROKEN)
    for rel, props in expect.items():
        if rel in BROKEN:
            continue
        written = out / _output_for(rel)
        assert status[rel]["status"] == "done" and status[rel]["output"] == str(written)
        with Image.open(written) as image:
            assert image.size == props["size"], rel
            if "mode" in props:
                assert image.mode == props["mode"], rel
            if props.get("icc"):
                assert image.info.get("icc_profile") == SRGB_ICC, rel
            if props.get("exif"):
                exif = image.getexif()
                assert exif.get(0x010F) == "TestCam" and exif.get(0x0112) == 1, rel
        result, original = decode_image(written), decode_image(source / rel)
        assert result.bit_depth == props.get("bits", 8), rel
        assert result.pixels.shape == original.pixels.shape, rel
        assert not np.array_equal(result.pixels, original.pixels), f"{rel} was not denoised"
        if original.alpha is not None:
            np.testing.assert_array_equal(result.alpha, original.alpha)
    assert decode_image(source / "palette/icon.gif").mode == "P"


def test_resume_after_sigkill(tmp_path: Path, tiny_weights: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    rng = np.random.default_rng(1)
    for index in range(30):
        path = source / f"set{index % 3}" / f"img{index:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(rng, 160, 200)).save(path)
    before = _checksums(source)
    command = [sys.executable, "-m", "invdn", "denoise", str(source), "-o", str(out), "--weights", str(tiny_weights)]
    env = {**os.environ, "INVDN_THREADS": "1"}

    first = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    assert first.stderr is not None
    done_lines = 0
    for line in first.stderr:
        done_lines += " done " in line
        if done_lines == 4:
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=120)
    assert first.returncode == -signal.SIGKILL
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert 4 <= len(finished) < 30, "the run finished before it could be killed"
    for path in finished:  # whatever exists is whole
        assert decode_image(path).pixels.shape == (160, 200, 3)
    # a file being written when the process died leaves only a temporary file, as invdn.io.atomic makes them
    (out / "set0" / ".img27.png.k1ll3d00.invdn-tmp").write_bytes(b"partial")

    report = tmp_path / "rerun.jsonl"
    second = subprocess.run([*command, "--report", str(report)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    skipped = {Path(line["output"]) for line in lines if line["status"] == "skipped"}
    redone = {Path(line["output"]) for line in lines if line["status"] == "done"}
    assert skipped == set(finished) and not skipped & redone and len(skipped | redone) == 30
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in finished.items())  # not rewritten
    assert not list(out.rglob("*.invdn-tmp")) and not [p for p in out.rglob(".*")]
    assert len(list(out.rglob("*.png"))) == 30
    assert _checksums(source) == before


def test_stdin_to_stdout(tiny_weights: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_photo(np.random.default_rng(2), 30, 40)).save(buffer, format="PNG")
    code, err, data = _run(["-", "--weights", str(tiny_weights)], stdin=buffer.getvalue())
    assert code == 0, err
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (40, 30), "RGB")
    code, err, data = _run(["-", "-o", "-", "--weights", str(tiny_weights)], stdin=b"garbage")
    assert code == 1 and "not a supported image" in err and data == b""


def test_single_file_to_stdout_and_to_a_named_file(tmp_path: Path, tiny_weights: Path) -> None:
    photo = tmp_path / "photo.jpg"
    Image.fromarray(_photo(np.random.default_rng(3), 30, 40)).save(photo)
    code, err, data = _run([str(photo), "-o", "-", "--weights", str(tiny_weights)])
    assert code == 0 and Image.open(io.BytesIO(data)).format == "JPEG", err
    code, err, _ = _run([str(photo), "-o", str(tmp_path / "clean.png"), "--weights", str(tiny_weights)])
    assert code == 0 and Image.open(tmp_path / "clean.png").format == "PNG", err


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    make_mixed_folder(source)
    code, err, listing = _run([str(source), "-o", str(out), "--dry-run", "--report", str(tmp_path / "r.jsonl")])
    assert code == 0, err
    text = listing.decode()
    assert text.count("would denoise") == 30 and str(out / "palette" / "icon.png") in text
    assert "(56x40)" in text and "size unknown" in text  # headers read; the text file has none
    assert not out.exists() and not (tmp_path / "r.jsonl").exists()


def test_refuses_output_inside_input(tmp_path: Path, tiny_weights: Path) -> None:
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    Image.fromarray(_photo(np.random.default_rng(4), 20, 20)).save(source / "sub" / "a.png")
    code, err, _ = _run([str(source), "-o", str(source / "clean"), "--weights", str(tiny_weights)])
    assert code == 2 and "inside input folder" in err and not (source / "clean").exists()
    args = [str(source), "-o", str(source / "clean"), "--allow-inside", "--weights", str(tiny_weights)]
    assert _run(args)[0] == 0
    code, err, _ = _run(args)  # the outputs inside are not taken as inputs on the next run
    assert code == 0 and "done 0, skipped 1, failed 0" in err
    assert sorted(str(p.relative_to(source)) for p in source.rglob("*.png")) == ["clean/sub/a.png", "sub/a.png"]


def test_never_replaces_an_input_and_usage_errors(tmp_path: Path, tiny_weights: Path) -> None:
    photo = tmp_path / "a.png"
    Image.fromarray(_photo(np.random.default_rng(5), 20, 20)).save(photo)
    original = photo.read_bytes()
    code, err, _ = _run([str(photo), "-o", str(tmp_path), "--overwrite", "--weights", str(tiny_weights)])
    assert code == 2 and "replace an input" in err and photo.read_bytes() == original
    assert _run([str(tmp_path / "missing.png"), "-o", str(tmp_path / "o")])[0] == 2
    assert _run([str(photo)])[0] == 2  # no -o
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "a.png").write_bytes(original)
    code, err, _ = _run([str(photo), str(tmp_path / "b" / "a.png"), "-o", str(tmp_path / "o")])
    assert code == 2 and "both be written" in err
    assert _run([str(photo), "-o", str(tmp_path / "o"), "--device", "quantum"])[0] == 2


def test_existing_outputs_overwrite_and_formats(tmp_path: Path, tiny_weights: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    rng = np.random.default_rng(6)
    Image.fromarray(_photo(rng, 24, 24)).save(source / "a.png")
    Image.fromarray(np.dstack([_photo(rng, 24, 24), _photo(rng, 24, 24)[..., 0]])).save(source / "b.png")
    base = [str(source), "-o", str(out), "--weights", str(tiny_weights)]

    code, err, _ = _run([*base, "--format", "jpg", "--suffix", "_dn", "--quality", "80"])
    assert code == 1 and "cannot store the alpha" in err  # JPEG would lose b.png's alpha: refused, reported
    assert sorted(p.name for p in out.iterdir()) == ["a_dn.jpg"]
    assert Image.open(out / "a_dn.jpg").format == "JPEG"

    (out / "a.png").write_bytes(b"mine")
    code, err, _ = _run(base)
    assert code == 0 and (out / "a.png").read_bytes() == b"mine" and "skipped 1" in err
    code, err, _ = _run([*base, "--no-skip-existing"])
    assert code == 1 and "--overwrite" in err and (out / "a.png").read_bytes() == b"mine"
    code, err, _ = _run([*base, "--overwrite"])
    assert code == 0 and decode_image(out / "a.png").pixels.shape == (24, 24, 3)


def test_fail_fast_stops_at_the_first_failure(tmp_path: Path, tiny_weights: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "a_broken.png").write_bytes(b"nope")
    for name in ("b.png", "c.png", "d.png"):
        Image.fromarray(_photo(np.random.default_rng(7), 20, 20)).save(source / name)
    code, err, _ = _run([str(source), "-o", str(out), "--fail-fast", "--weights", str(tiny_weights)])
    assert code == 1 and "--fail-fast" in err
    assert len(list(out.glob("*.png"))) < 3 if out.exists() else True


def test_globs_and_workers_give_the_same_result(tmp_path: Path, tiny_weights: Path) -> None:
    source = tmp_path / "in"
    rng = np.random.default_rng(8)
    for rel in ("x/a.png", "x/b.jpg", "y/c.png"):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(rng, 40, 40)).save(source / rel)
    pattern = str(source / "**" / "*.png")
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run([pattern, "-o", str(one), "--weights", str(tiny_weights), "--seed", "3"])[0] == 0
    args = [pattern, "-o", str(two), "--weights", str(tiny_weights), "--seed", "3", "--workers", "2"]
    assert _run(args)[0] == 0
    assert sorted(str(p.relative_to(one)) for p in one.rglob("*.png")) == ["x/a.png", "y/c.png"]
    for rel in ("x/a.png", "y/c.png"):
        assert (one / rel).read_bytes() == (two / rel).read_bytes()


def test_help_shows_every_option_with_defaults() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "invdn", "denoise", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    text = " ".join(result.stdout.split())
    for option in ("--output", "--format", "--quality", "--suffix", "--overwrite", "--skip-existing", "--fail-fast"):
        assert option in text
    for default in ("[default: keep]", "[default: 95;", "[default: invdn]", "[default: auto]", "[default: fp32]"):
        assert default in text


@pytest.mark.slow
def test_24_megapixel_photo_in_bounded_memory(tmp_path: Path) -> None:
    """A 6000x4000 JPEG through the default model on CPU: peak RSS of the process under 2.5 GB."""
    rng = np.random.default_rng(9)
    photo = tmp_path / "big.jpg"
    small = _photo(rng, 400, 600)
    Image.fromarray(small).resize((6000, 4000), Image.Resampling.BICUBIC).save(photo, quality=90)
    out = tmp_path / "out"
    env = {**os.environ, "INVDN_THREADS": str(min(2, os.cpu_count() or 1))}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "invdn", "denoise", str(photo), "-o", str(out), "--device", "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kilobytes on Linux
    assert result.returncode == 0, result.stderr
    print(f"6000x4000 in {seconds:.0f} s, peak RSS {peak / 1e9:.2f} GB")
    assert peak < 2.5e9
    with Image.open(out / "big.jpg") as image:
        assert image.size == (6000, 4000)
