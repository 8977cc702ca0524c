"""Running a planned batch: the threaded local pipeline (`run_jobs`) and what every run does around it
(`run_batch`: the report file, the reporter, fail-fast, Ctrl-C).

`run_jobs` decodes the next files and encodes and writes the previous ones in `workers` threads while the model
works on the current one, keeping the images in memory under IN_FLIGHT_MEGAPIXELS. Each output is written
atomically (`invdn.io.atomic.write_atomic`); stdin and stdout stand in for the files of a "-" job.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from invdn.batch.pipeline import Options, decode, denoise_pixels, encode, failure_reason
from invdn.batch.plan import Job
from invdn.batch.progress import Reporter
from invdn.io.atomic import write_atomic

if TYPE_CHECKING:
    import numpy as np

    from invdn.inference.engine import Denoiser
    from invdn.io.decode import LoadedImage

T = TypeVar("T")

# Decoded or denoised images held at once (about 12 bytes per pixel each) before decoding the next one.
IN_FLIGHT_MEGAPIXELS = 32.0


class JobSink(Protocol):
    """What a run tells about its jobs: `Reporter`, or a stand-in that only wants the jobs filled in."""

    def record(self, job: Job, progressed: float = 0.0) -> None: ...

    def advance(self, job: Job, megapixels: float, fraction: float) -> None: ...


def _decode(job: Job, options: Options) -> LoadedImage:
    return decode(sys.stdin.buffer.read() if job.source is None else job.source, options)


def _encode_and_write(job: Job, image: LoadedImage, pixels: np.ndarray, options: Options) -> int:
    data = encode(image, pixels, job.fmt, options)
    if job.target is None:
        stream = sys.stdout.buffer
        stream.write(data)
        stream.flush()
    else:
        write_atomic(job.target, data, overwrite=options.overwrite)
    return len(data)


def run_jobs(
    jobs: list[Job], denoiser: Denoiser, options: Options, reporter: JobSink, workers: int, fail_fast: bool
) -> bool:
    """Decode ahead and encode behind in `workers` threads while the denoiser runs; False if stopped early.

    Every job ends done or failed (a file that fails is reported and the run goes on, unless `fail_fast`) and is
    passed to `reporter.record`; its `seconds` count its own decoding, denoising, encoding and writing.
    """
    ahead = max(1, workers)
    pending_decodes: deque[tuple[Job, Future[LoadedImage], float]] = deque()
    pending_writes: deque[tuple[Job, Future[int], float, float]] = deque()
    queue = deque(jobs)
    stopped = False

    def finish_write(job: Job, future: Future[int], started: float, progressed: float) -> None:
        nonlocal stopped
        try:
            job.bytes_out = future.result()
            job.status = "done"
        except Exception as exc:  # any failure of one file is reported, not fatal to the run
            job.status, job.reason = "failed", failure_reason(exc)
            stopped = stopped or fail_fast
        reporter.record(job, progressed)

    def in_flight() -> float:
        return sum(item[0].megapixels for item in pending_decodes) + sum(item[0].megapixels for item in pending_writes)

    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="invdn-io") as pool:
        try:
            while (queue or pending_decodes) and not stopped:
                # decode ahead, but keep the decoded/denoised images in memory under IN_FLIGHT_MEGAPIXELS
                while queue and len(pending_decodes) < ahead:
                    load = in_flight()
                    if load > 0 and load + queue[0].megapixels > IN_FLIGHT_MEGAPIXELS:
                        break
                    job = queue.popleft()
                    decoding = pool.submit(_timed, job, _decode, job, options)
                    pending_decodes.append((job, decoding, time.perf_counter()))
                if not pending_decodes:  # memory is held by images being written: wait for the oldest
                    finish_write(*pending_writes.popleft())
                    continue
                job, decoding, started = pending_decodes.popleft()
                try:
                    image = decoding.result()
                except Exception as exc:  # a broken file: report it and go on
                    job.status, job.reason = "failed", failure_reason(exc)
                    reporter.record(job)
                    stopped = fail_fast
                    continue
                finally:
                    del decoding  # the future would keep the image alive after it is written
                job.size = (image.width, image.height)
                megapixels = job.megapixels
                shown = [0.0]

                def on_tile(
                    done: int, total: int, job: Job = job, mp: float = megapixels, shown: list[float] = shown
                ) -> None:
                    step = mp * done / total - shown[0]
                    shown[0] += step
                    reporter.advance(job, step, done / total)

                try:
                    result = _timed(job, denoise_pixels, denoiser, image, options, progress=on_tile)
                except (RuntimeError, ValueError, MemoryError) as exc:
                    job.status, job.reason = "failed", failure_reason(exc)
                    reporter.record(job, shown[0])
                    stopped = fail_fast
                    continue
                image.pixels = result  # the input pixels are no longer needed: free them
                del result
                while len(pending_writes) >= ahead:
                    finish_write(*pending_writes.popleft())
                writing = pool.submit(_timed, job, _encode_and_write, job, image, image.pixels, options)
                pending_writes.append((job, writing, started, shown[0]))
                del image
                while pending_writes and pending_writes[0][1].done():
                    finish_write(*pending_writes.popleft())
        finally:
            for _, future, _ in pending_decodes:
                future.cancel()
            while pending_writes:
                finish_write(*pending_writes.popleft())
    return not stopped


def _timed(job: Job, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """fn(*args, **kwargs), its own running time added to `job.seconds` (not the time the job waited its turn)."""
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        job.seconds += time.perf_counter() - start


@dataclass
class Outcome:
    """How a run ended."""

    counts: dict[str, int]  # jobs done, skipped, failed
    summary: str  # the summary line (counts, time, megapixels per second)
    completed: bool  # every pending job was run: not stopped by fail-fast, not interrupted
    interrupted: bool  # stopped by Ctrl-C (KeyboardInterrupt)


def run_batch(
    jobs: list[Job],
    work: Callable[[list[Job], Reporter], bool],
    report: Path | None,
    quiet: bool,
    fail_fast: bool = False,
    in_order: bool = True,
) -> Outcome:
    """Report the jobs planning settled (skipped, failed), then `work(pending jobs, reporter)` (`run_jobs` or the
    Ray run, returning False when stopped early); close the reporter whatever happens.

    `report`: append one JSON line per job to this file. `in_order`: lines and report entries in input order.
    With `fail_fast`, a job planning already failed stops the run before any work. Ctrl-C ends the run with
    `interrupted` set rather than raising.
    """
    todo = [job for job in jobs if job.status == "pending"]
    settled = [job for job in jobs if job.status != "pending"]
    stream = None
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        stream = open(report, "a", encoding="utf-8")  # closed in the finally below
    total = sum(job.megapixels for job in todo)
    reporter = Reporter(len(jobs), total, stream, quiet, order=jobs if in_order else None)
    completed = interrupted = False
    try:
        for job in settled:
            reporter.record(job)
        if not (fail_fast and any(job.status == "failed" for job in settled)):
            completed = work(todo, reporter)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        summary = reporter.close()
        if stream is not None:
            stream.close()
    return Outcome(dict(reporter.counts), summary, completed, interrupted)
