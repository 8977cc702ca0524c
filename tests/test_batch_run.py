"""invdn.batch.run without a model: a fake identity denoiser through the threaded pipeline (order of reports, broken
files reported and passed over, fail-fast, atomic never-clobbering writes) and run_batch around it."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invdn.batch.pipeline import Options
from invdn.batch.plan import Job
from invdn.batch.progress import Reporter
from invdn.batch.run import run_batch, run_jobs

OPTIONS = Options(overwrite=False, quality=95, samples=1, ensemble=False, seed=0, max_pixels=None)


class FakeDenoiser:
    """Returns its input; sleeps per call so that files finish out of order; fails on images of `fail_width`."""

    def __init__(self, fail_width: int | None = None, seconds: float = 0.0) -> None:
        self.fail_width = fail_width
        self.seconds = seconds
        self.calls = 0

    def __call__(
        self,
        pixels: np.ndarray,
        samples: int = 1,
        ensemble: bool = False,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        self.calls += 1
        time.sleep(self.seconds)
        if pixels.shape[1] == self.fail_width:
            raise RuntimeError("the model ran out of luck")
        if progress is not None:
            progress(1, 2)
            progress(2, 2)
        return pixels.copy()


def _photo(index: int, width: int = 12) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 256, (10, width, 3), dtype=np.uint8)


def _jobs(folder: Path, count: int, broken: tuple[int, ...] = (), width: dict[int, int] | None = None) -> list[Job]:
    jobs = []
    for index in range(count):
        source = folder / "in" / f"{index}.png"
        source.parent.mkdir(parents=True, exist_ok=True)
        if index in broken:
            source.write_bytes(b"not an image at all")
        else:
            Image.fromarray(_photo(index, (width or {}).get(index, 12))).save(source)
        jobs.append(Job(source=source, target=folder / "out" / f"{index}.png", fmt="PNG", key=source.name))
    return jobs


def _run(jobs: list[Job], denoiser: FakeDenoiser, workers: int = 2, fail_fast: bool = False, options=OPTIONS):
    report = io.StringIO()
    reporter = Reporter(len(jobs), 0.0, report, quiet=True, order=jobs)
    finished = run_jobs(jobs, denoiser, options, reporter, workers=workers, fail_fast=fail_fast)  # type: ignore[arg-type]
    reporter.close()
    return finished, [json.loads(line) for line in report.getvalue().splitlines()]


def test_outputs_match_inputs_and_reports_come_in_input_order(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 6)
    finished, lines = _run(jobs, FakeDenoiser(seconds=0.01), workers=3)
    assert finished and [job.status for job in jobs] == ["done"] * 6
    assert [line["input"] for line in lines] == [str(job.source) for job in jobs]
    for index, job in enumerate(jobs):
        assert job.target is not None and job.size == (12, 10) and job.bytes_out == job.target.stat().st_size
        np.testing.assert_array_equal(np.asarray(Image.open(job.target)), _photo(index))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{index}.png" for index in range(6)]


def test_a_broken_file_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 5, broken=(1,), width={3: 7})
    finished, lines = _run(jobs, FakeDenoiser(fail_width=7))
    assert finished  # without --fail-fast a failure does not stop the run
    assert [job.status for job in jobs] == ["done", "failed", "done", "failed", "done"]
    assert "not a supported image" in jobs[1].reason and "RuntimeError: the model ran out of luck" in jobs[3].reason
    assert [line["status"] for line in lines] == ["done", "failed", "done", "failed", "done"]
    assert not (tmp_path / "out" / "1.png").exists() and not (tmp_path / "out" / "3.png").exists()


def test_fail_fast_stops_after_the_first_failure(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 4, broken=(1,))
    denoiser = FakeDenoiser()
    finished, lines = _run(jobs, denoiser, workers=1, fail_fast=True)
    assert not finished
    assert [job.status for job in jobs] == ["done", "failed", "pending", "pending"]
    assert denoiser.calls == 1 and [line["status"] for line in lines] == ["done", "failed"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["0.png"]


def test_writes_never_clobber_and_leave_no_temporary_file(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "1.png").write_bytes(b"someone else's file")
    (tmp_path / "out" / "2.png").mkdir()  # a folder where the output should go: that write fails
    finished, _ = _run(jobs, FakeDenoiser())
    assert finished and [job.status for job in jobs] == ["done", "failed", "failed"]
    assert "exists" in jobs[1].reason and "--overwrite" in jobs[1].reason
    assert (tmp_path / "out" / "1.png").read_bytes() == b"someone else's file"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png", "2.png"]  # no temp files
    again = _jobs(tmp_path, 2)
    overwrite = Options(overwrite=True, quality=95, samples=1, ensemble=False, seed=0, max_pixels=None)
    finished, _ = _run(again, FakeDenoiser(), options=overwrite)
    assert finished and np.array_equal(np.asarray(Image.open(tmp_path / "out" / "1.png")), _photo(1))


def test_too_many_pixels_fail_before_decoding(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 2, width={1: 40})
    capped = Options(overwrite=False, quality=95, samples=1, ensemble=False, seed=0, max_pixels=200)
    denoiser = FakeDenoiser()
    _run(jobs, denoiser, options=capped)
    assert [job.status for job in jobs] == ["done", "failed"] and "over the limit" in jobs[1].reason
    assert denoiser.calls == 1


def test_run_batch_reports_settled_jobs_appends_the_report_and_survives_ctrl_c(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 3)
    jobs[0].status, jobs[0].reason = "skipped", "output exists"
    report = tmp_path / "reports" / "run.jsonl"
    ran: list[list[str]] = []

    def work(todo: list[Job], reporter: Reporter) -> bool:
        ran.append([job.name for job in todo])
        return run_jobs(todo, FakeDenoiser(), OPTIONS, reporter, workers=1, fail_fast=False)  # type: ignore[arg-type]

    outcome = run_batch(jobs, work, report, quiet=True)
    assert ran == [[jobs[1].name, jobs[2].name]] and outcome.completed and not outcome.interrupted
    assert outcome.counts == {"done": 2, "skipped": 1, "failed": 0} and outcome.summary.startswith("done 2, skipped 1")
    assert [json.loads(line)["status"] for line in report.read_text().splitlines()] == ["skipped", "done", "done"]

    def interrupted(todo: list[Job], reporter: Reporter) -> bool:
        raise KeyboardInterrupt

    outcome = run_batch(_jobs(tmp_path / "again", 1), interrupted, report, quiet=True)
    assert outcome.interrupted and not outcome.completed
    assert len(report.read_text().splitlines()) == 3  # appended to, never truncated; nothing finished this time


def test_run_batch_with_fail_fast_stops_on_a_job_planning_failed(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, 2)
    jobs[0].status, jobs[0].reason = "failed", "output exists; pass --overwrite"

    def work(todo: list[Job], reporter: Reporter) -> bool:
        pytest.fail("no work may start after a failure with --fail-fast")

    outcome = run_batch(jobs, work, None, quiet=True, fail_fast=True)
    assert not outcome.completed and outcome.counts["failed"] == 1 and jobs[1].status == "pending"
