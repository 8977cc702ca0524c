"""`invdn denoise`'s reporter: files that finish out of order are reported in input order."""

from __future__ import annotations

import io
import json
from pathlib import Path

from invdn.batch.plan import Job
from invdn.batch.progress import Reporter


def _jobs(count: int) -> list[Job]:
    return [Job(source=Path(f"in/{index}.png"), target=Path(f"out/{index}.png"), fmt="png") for index in range(count)]


def test_lines_and_report_follow_the_input_order(capsys):
    jobs = _jobs(4)
    report = io.StringIO()
    reporter = Reporter(len(jobs), 0.0, report, quiet=False, order=jobs)
    finish_order = [2, 0, 3, 1]  # e.g. 2 failed while decoding, before 0 was written
    for index in finish_order:
        job = jobs[index]
        job.status, job.seconds = ("failed", 0.1) if index == 2 else ("done", float(index))
        job.reason = "damaged" if index == 2 else ""
        reporter.record(job)
        if index == 2:  # nothing can be said about 2 before 0 and 1
            assert report.getvalue() == ""
    reporter.close()
    entries = [json.loads(line) for line in report.getvalue().splitlines()]
    assert [entry["input"] for entry in entries] == [f"in/{index}.png" for index in range(4)]
    assert [entry["seconds"] for entry in entries] == [0.0, 1.0, 0.1, 3.0]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in lines] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert [line.split()[2].rstrip(":") for line in lines] == [f"in/{index}.png" for index in range(4)]


def test_a_run_that_stops_early_still_reports_what_finished():
    jobs = _jobs(3)
    report = io.StringIO()
    reporter = Reporter(len(jobs), 0.0, report, quiet=True, order=jobs)
    jobs[1].status = "done"
    reporter.record(jobs[1])  # job 0 never finishes (fail-fast stopped the run)
    assert report.getvalue() == ""
    summary = reporter.close()
    assert [json.loads(line)["input"] for line in report.getvalue().splitlines()] == ["in/1.png"]
    assert summary.startswith("done 1, skipped 0, failed 0")


def test_per_file_seconds_leave_out_the_wait_behind_other_files(tmp_path):
    """Files decode ahead while another is denoised; each file's seconds count its own work, not that wait."""
    import time

    import numpy as np
    import torch
    from PIL import Image

    from invdn.batch.pipeline import Options
    from invdn.batch.run import run_jobs
    from invdn.inference.engine import Denoiser

    class SlowIdentity(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def denoise(self, x: torch.Tensor, ensemble: bool = False) -> torch.Tensor:
            time.sleep(0.4)
            return x

    jobs = []
    for index in range(4):
        source = tmp_path / f"{index}.png"
        Image.fromarray(np.full((16, 16, 3), 40 * index, np.uint8)).save(source)
        jobs.append(Job(source=source, target=tmp_path / f"out{index}.png", fmt="png"))
    reporter = Reporter(len(jobs), 0.0, io.StringIO(), quiet=True, order=jobs)
    options = Options(overwrite=False, quality=95, samples=1, ensemble=False, seed=0, max_pixels=None)
    assert run_jobs(jobs, Denoiser(SlowIdentity(), device="cpu"), options, reporter, workers=2, fail_fast=False)
    assert all(job.status == "done" for job in jobs)
    # every file waited ~0.4 s per file ahead of it; its own work is one 0.4 s denoise plus milliseconds of I/O
    assert all(0.4 <= job.seconds < 0.75 for job in jobs), [job.seconds for job in jobs]
