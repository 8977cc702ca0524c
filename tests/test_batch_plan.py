"""invdn.batch.plan, without a model: which inputs become which outputs, and every plan that could lose data
refused with a message saying what to change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invdn.batch.plan import PlanError, PlanRequest, build_plan, plan_jobs, plan_uris, remove_stale_temp_files
from invdn.io.atomic import temp_name


def _image(path: Path, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 6, 3), 90, np.uint8)).save(path, format=fmt)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/a.png, in/b.JPEG, in/c.gif, in/sub/d.tif, in/sub/deeper/e.webp, plus things that are not inputs."""
    root = tmp_path / "in"
    _image(root / "a.png")
    _image(root / "b.JPEG", "JPEG")
    _image(root / "c.gif", "GIF")
    _image(root / "sub" / "d.tif", "TIFF")
    _image(root / "sub" / "deeper" / "e.webp", "WEBP")
    _image(root / ".hidden.png")
    _image(root / ".cache" / "f.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _plan(inputs: list[Path | str], output: Path | str | None, fmt: str = "keep", suffix: str = "", **flags: bool):
    sources = tuple(str(item) for item in inputs)
    return build_plan(PlanRequest(sources, None if output is None else str(output), fmt, suffix, **flags))


def _pairs(plan, root: Path, out: Path) -> list[tuple[str, str, str]]:
    return [
        (job.source.relative_to(root).as_posix(), job.target.relative_to(out).as_posix(), job.fmt) for job in plan.jobs
    ]


def test_folders_are_mirrored_with_names_and_formats_kept(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _plan([tree], out)
    assert not plan.stdio
    assert _pairs(plan, tree, out) == [
        ("a.png", "a.png", "PNG"),
        ("b.JPEG", "b.JPEG", "JPEG"),  # the user's spelling of the extension is kept
        ("c.gif", "c.png", "PNG"),  # GIF is written as PNG
        ("sub/d.tif", "sub/d.tif", "TIFF"),
        ("sub/deeper/e.webp", "sub/deeper/e.webp", "WEBP"),
    ]
    assert [job.key for job in plan.jobs] == ["a.png", "b.JPEG", "c.gif", "sub/d.tif", "sub/deeper/e.webp"]


def test_no_recursion_format_and_suffix(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _plan([tree], out, fmt="tif", suffix="_dn", recursive=False)
    assert _pairs(plan, tree, out) == [("a.png", "a_dn.tif", "tif"), ("b.JPEG", "b_dn.tif", "tif"),
                                       ("c.gif", "c_dn.tif", "tif")]  # fmt: skip


def test_single_files_and_a_named_output_file(tree: Path, tmp_path: Path) -> None:
    plan = _plan([tree / "a.png", tree / "sub" / "d.tif"], tmp_path / "out")
    assert [job.target for job in plan.jobs] == [tmp_path / "out" / "a.png", tmp_path / "out" / "d.tif"]
    named = _plan([tree / "a.png"], tmp_path / "result.jpeg")
    assert [(job.target, job.fmt) for job in named.jobs] == [(tmp_path / "result.jpeg", "JPEG")]
    with pytest.raises(PlanError, match="cannot write GIF .*palette.*name the output .png"):
        _plan([tree / "a.png"], tmp_path / "result.gif")


def test_output_inside_an_input_folder_is_refused_or_excluded(tree: Path) -> None:
    out = tree / "denoised"
    _image(out / "a.png")  # a previous run's output: must never be read as an input
    with pytest.raises(PlanError, match="inside input folder .*--allow-inside"):
        _plan([tree], out)
    plan = _plan([tree], out, allow_inside=True)
    assert all("denoised" not in job.source.parts for job in plan.jobs)
    assert len(plan.jobs) == 5


def test_an_output_replacing_an_input_or_two_inputs_on_one_output_is_refused(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="would replace an input file"):
        _plan([tree], tree, allow_inside=True)
    _image(tree / "a.jpg", "JPEG")
    with pytest.raises(PlanError, match="a.jpg and .*a.png would both be written to .*out/a.png"):
        _plan([tree], tmp_path / "out", fmt="png")
    assert len(_plan([tree], tmp_path / "out", fmt="keep").jobs) == 6  # a.png and a.jpg keep their formats


def test_globs_are_mirrored_from_their_fixed_part(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _plan([f"{tree}/**/*.tif", f"{tree}/*.png"], out)
    assert _pairs(plan, tree, out) == [("sub/d.tif", "sub/d.tif", "TIFF"), ("a.png", "a.png", "PNG")]
    with pytest.raises(PlanError, match="no files match"):
        _plan([f"{tree}/*.bmp"], out)
    with pytest.raises(PlanError, match="inside .* where .* matches"):
        _plan([f"{tree}/*.png"], tree / "out")


def test_stdin_and_stdout(tree: Path) -> None:
    plan = _plan(["-"], None)
    assert plan.stdio and len(plan.jobs) == 1 and plan.jobs[0].source is None and plan.jobs[0].target is None
    assert plan.jobs[0].name == "<stdin>" and plan.jobs[0].target_name == "<stdout>" and plan.jobs[0].fmt == "keep"
    to_stdout = _plan([tree / "c.gif"], "-")
    assert to_stdout.stdio and to_stdout.jobs[0].target is None and to_stdout.jobs[0].fmt == "PNG"
    for inputs, output, message in [
        (["-", str(tree / "a.png")], None, "must be the only input"),
        (["-"], tree / "out", "goes to stdout"),
        ([tree], "-", "exactly one input image, got 5"),
        ([tree], None, "missing -o/--output"),
        ([tree / "missing.png"], tree / "out", "no such file or folder"),
    ]:
        with pytest.raises(PlanError, match=message):
            _plan(inputs, output)


def test_existing_outputs_are_skipped_refused_or_replaced(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _image(out / "a.png")

    def statuses(overwrite: bool, skip_existing: bool) -> dict[str, str]:
        jobs = plan_jobs(PlanRequest((str(tree),), str(out)), None, overwrite, skip_existing)
        return {job.key: job.status for job in jobs}

    kept = statuses(False, True)
    assert kept.pop("a.png") == "skipped" and list(kept.values()) == ["pending"] * 4
    assert statuses(False, False)["a.png"] == "failed"
    assert set(statuses(True, True).values()) == {"pending"}
    with pytest.raises(PlanError, match="cannot split stdin"):
        plan_jobs(PlanRequest(("-",), None), shard=(1, 2))
    with pytest.raises(PlanError, match="add --ray"):
        plan_jobs(PlanRequest(("s3://bucket/in",), str(out)))


def test_shards_partition_the_plan(tree: Path, tmp_path: Path) -> None:
    def keys(shard: tuple[int, int] | None) -> list[str]:
        jobs = plan_jobs(PlanRequest((str(tree),), str(tmp_path / "out")), shard)
        return [job.key for job in jobs]

    parts = [keys((index, 3)) for index in (1, 2, 3)]
    assert sorted(key for part in parts for key in part) == sorted(keys(None))


def test_only_this_runs_stale_temporary_files_are_removed(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _plan([tree], out)
    ours = out / "sub" / temp_name("d.tif", "abcd1234")
    other = out / temp_name("unrelated.png", "abcd1234")
    plain = out / ".a.png.notes"
    for path in (ours, other, plain):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    assert remove_stale_temp_files(plan.jobs) == 1
    assert not ours.exists() and other.exists() and plain.exists()


def test_uri_plans_follow_the_local_rules(tree: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    out = tmp_path / "out"
    jobs = plan_uris(PlanRequest((f"file://{tree}",), str(out), suffix="_dn"))
    local = _plan([tree], out, suffix="_dn").jobs
    assert [(str(job.target), job.fmt, job.key) for job in jobs] == [
        (str(job.target), job.fmt, job.key) for job in local
    ]
    assert all(str(job.source).startswith("file://") for job in jobs)
    with pytest.raises(PlanError, match="is not a URI"):
        plan_uris(PlanRequest((f"file://{tree}", str(tree)), str(out)))
    with pytest.raises(PlanError, match="inside input folder"):
        plan_uris(PlanRequest((f"file://{tree}",), f"file://{tree}/out"))
    with pytest.raises(PlanError, match="would both be written"):
        plan_uris(PlanRequest((f"file://{tree}/a.png", f"file://{tree}/sub/../a.png"), str(out)))
    assert os.listdir(tmp_path) == ["in"]  # planning wrote nothing
