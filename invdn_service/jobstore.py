"""Asynchronous jobs (POST /v1/jobs): images too big for a synchronous answer, denoised in the background.

The store holds at most `max_jobs` jobs, running or finished, in memory; a finished, failed or cancelled job
expires `ttl_s` seconds after it ended. A job's tiles run in the tile scheduler like any request's, so a job never
holds a worker for more than one tile at a time; deleting a job cancels its remaining tiles.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from invdn.io.errors import ImageError
from invdn_service.engine import LoadedModel
from invdn_service.errors import JobNotFound, Overloaded, ServiceError
from invdn_service.jobs import (
    DenoiseOptions,
    DenoiseOutput,
    Progress,
    check_output_format,
    denoise_tiles,
    encode_output,
)
from invdn_service.metrics import ServiceMetrics
from invdn_service.scheduler import Cancelled, Task, TileScheduler
from invdn_service.uploads import decode

log = logging.getLogger("uvicorn.error.invdn")

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "running", "done", "failed", "cancelled")
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"


@dataclass(eq=False)
class Job:
    """One asynchronous denoising job."""

    id: str
    model: LoadedModel
    options: DenoiseOptions
    width: int
    height: int
    created: float = field(default_factory=time.time)  # unix seconds
    status: JobStatus = "queued"
    ended: float | None = None  # unix seconds when it finished, failed or was cancelled
    progress: Progress = field(default_factory=Progress)
    output: DenoiseOutput | None = None
    error_code: str | None = None
    error_detail: str | None = None
    task: Task | None = None  # its tiles in the scheduler, once decoded
    runner: asyncio.Task | None = None  # the coroutine driving it
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")


class JobStore:
    """Bounded in-memory store of jobs with expiry (see the module docstring)."""

    def __init__(self, max_jobs: int, ttl_s: int, retry_after_s: int, metrics: ServiceMetrics | None = None) -> None:
        self.max_jobs = max_jobs
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self._jobs: dict[str, Job] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def expires_at(self, job: Job) -> float | None:
        return None if job.ended is None else job.ended + self.ttl_s

    def purge(self) -> int:
        """Drops expired jobs; returns how many."""
        now = time.time()
        expired = [
            job_id for job_id, job in self._jobs.items() if job.ended is not None and now >= job.ended + self.ttl_s
        ]
        for job_id in expired:
            del self._jobs[job_id]
        if expired:
            self._count()
        return len(expired)

    def ensure_room(self) -> None:
        """Raises Overloaded (503 with Retry-After) when the store is full of unexpired jobs."""
        if len(self._jobs) >= self.max_jobs and (self.purge() == 0 or len(self._jobs) >= self.max_jobs):
            raise Overloaded(
                f"{len(self._jobs)} jobs are held (the limit); retry in {self.retry_after_s} s or delete finished jobs",
                headers={"Retry-After": str(self.retry_after_s)},
            )

    def get(self, job_id: str) -> Job:
        self.purge()
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id} (unknown, deleted or expired after {self.ttl_s} s)")
        return job

    def start(
        self,
        data: bytes,
        model: LoadedModel,
        options: DenoiseOptions,
        header: tuple[int, int],
        scheduler: TileScheduler,
        max_pixels: int,
        max_tile: int,
        metrics: ServiceMetrics,
    ) -> Job:
        """Creates a job and starts it in the background (the caller is on the event loop)."""
        self.ensure_room()
        job = Job(uuid.uuid4().hex, model, options, width=header[0], height=header[1])
        self._jobs[job.id] = job
        job.runner = asyncio.get_running_loop().create_task(
            self._run(job, data, scheduler, max_pixels, max_tile, metrics), name=f"invdn-job-{job.id}"
        )
        self._count()
        return job

    async def _run(
        self, job: Job, data: bytes, scheduler: TileScheduler, max_pixels: int, max_tile: int, metrics: ServiceMetrics
    ) -> None:
        try:
            image = await asyncio.to_thread(decode, data, max_pixels)
            del data
            check_output_format(image, job.options.format)
            if job.cancel_requested:
                raise Cancelled("deleted")
            work = denoise_tiles(job.model, image.pixels, job.options, max_tile, metrics, job.progress)
            job.task = scheduler.submit(work, kind="job")
            job.status = "running"
            self._count()
            denoised = await asyncio.wrap_future(job.task.future)
            job.task = None
            job.output = await asyncio.to_thread(encode_output, image, denoised, job.options.format)
            job.status = "done"
        except Cancelled:
            job.status = "cancelled"
        except ServiceError as exc:
            job.status, job.error_code, job.error_detail = "failed", exc.code, str(exc.detail)
        except ImageError as exc:
            job.status, job.error_code, job.error_detail = "failed", "undecodable_image", str(exc)
        except Exception:  # reported in the job's status; the traceback goes to the log
            log.exception("job %s failed", job.id)
            job.status, job.error_code, job.error_detail = "failed", "internal_error", "internal error"
        finally:
            job.task = None
            job.ended = time.time()
            self._count()

    def cancel(self, job: Job, scheduler: TileScheduler) -> None:
        """Stops a job's remaining tiles (DELETE); a finished job is left as it is."""
        if job.finished:
            return
        job.cancel_requested = True
        if job.task is not None:
            scheduler.cancel(job.task, "deleted")
        elif self.metrics is not None:  # still decoding: it stops before its first tile
            self.metrics.cancelled.labels(reason="deleted", kind="job").inc()

    def remove(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        self._count()

    async def shutdown(self, scheduler: TileScheduler) -> None:
        """Cancels every unfinished job and waits for their coroutines."""
        runners = []
        for job in list(self._jobs.values()):
            if not job.finished:
                job.cancel_requested = True
                if job.task is not None:
                    scheduler.cancel(job.task, "shutdown")
            if job.runner is not None:
                runners.append(job.runner)
        if runners:
            await asyncio.wait(runners, timeout=30)

    async def expire_periodically(self, every_s: float) -> None:
        """Purges expired jobs every `every_s` seconds, so their results do not outlive their expiry."""
        while True:
            await asyncio.sleep(every_s)
            self.purge()

    def _count(self) -> None:
        if self.metrics is None:
            return
        for status in JOB_STATUSES:
            self.metrics.jobs.labels(status=status).set(sum(1 for job in self._jobs.values() if job.status == status))
