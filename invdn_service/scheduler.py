"""Fair tile scheduling: every request's model work is a sequence of tiles, and a fixed pool of threads runs the
tiles of all requests interleaved, so a small image is never stuck behind a big one.

A task is a generator: each `next()` runs one tile and yields the pixels it processed; its return value is the
task's result. Two classes share the workers: synchronous requests (a client is waiting) go first, but while jobs
wait, at most `job_every` synchronous tiles run in a row before a job tile, so a job always progresses. Within a
class, the scheduler picks the waiting task that has been served the fewest pixels (a virtual clock: a new task
starts at the service level of the last one picked, so it is neither starved nor given unbounded priority).
Between two tiles a task can be cancelled (client gone, job deleted): its remaining tiles never run.

Synchronous requests are admitted (`admitted`, from before decoding to after encoding) at most `workers +
queue_size` at once and while their pixels stay within `queue_pixels` (503 with Retry-After beyond either); jobs
are bounded by the job store.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from invdn_service.errors import ClientDisconnected, NotReady, Overloaded
from invdn_service.metrics import ServiceMetrics

T = TypeVar("T")

# A task's work: yields the pixels of each tile it ran, returns its result.
Work = Generator[int, None, T]


class Cancelled(Exception):
    """The task was cancelled before its last tile; `reason` is disconnect, deleted, expired or shutdown."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cancelled ({reason})")
        self.reason = reason


@dataclass(eq=False)
class Task(Generic[T]):
    """One request's work in the scheduler."""

    work: Work[T]
    kind: str  # "sync" (a waiting HTTP request) or "job"
    pixels: int  # pixels of the image(s)
    future: Future[T] = field(default_factory=Future)
    served: float = 0.0  # pixels denoised so far, on the scheduler's virtual clock
    sequence: int = 0  # arrival order, the tie-break
    cancel_reason: str | None = None  # set by `cancel`; checked before every tile
    running: bool = False  # a worker is running one of its tiles now
    tiles: int = 0  # tiles run
    finished: bool = False  # ended: result, failure or cancellation


def _settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Sets a future's outcome unless its waiter already cancelled it."""
    if future.set_running_or_notify_cancel():
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class TileScheduler:
    """Runs the tiles of many tasks on `workers` threads, fairly (see the module docstring)."""

    def __init__(
        self,
        workers: int,
        queue_size: int,
        queue_pixels: int,
        retry_after_s: int,
        metrics: ServiceMetrics | None = None,
        job_every: int = 4,
    ) -> None:
        self.capacity = workers + queue_size
        self.job_every = job_every
        self.queue_pixels = queue_pixels
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self._ready: list[Task[Any]] = []  # tasks waiting for a worker
        self._active: set[Task[Any]] = set()  # every task not finished (waiting or running)
        self._sync_count = 0
        self._sync_pixels = 0
        self._clock: dict[str, float] = {}  # virtual time of each class: the service level of its last task picked
        self._sync_streak = 0  # synchronous tiles started in a row while a job was waiting
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._stopping = False
        self._longest: dict[str, float] = {}  # longest tile so far, by kind
        self._threads = [
            threading.Thread(target=self._worker, name=f"invdn-tiles-{index}", daemon=True) for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # ---------- admission ----------

    @property
    def depth(self) -> int:
        """Synchronous requests admitted and not finished."""
        return self._sync_count

    @property
    def active(self) -> int:
        """Tasks (requests and jobs) admitted and not finished."""
        return len(self._active)

    @property
    def running(self) -> int:
        """Tasks with a tile running now."""
        with self._condition:
            return sum(1 for task in self._active if task.running)

    def _overloaded(self) -> Overloaded:
        return Overloaded(
            f"the server is busy ({self._sync_count} images in progress); retry in {self.retry_after_s} s",
            headers={"Retry-After": str(self.retry_after_s)},
        )

    def ensure_room(self) -> None:
        """Raises Overloaded (503 with Retry-After) when no synchronous request could be admitted right now."""
        if self._sync_count >= self.capacity or (self._sync_count and self._sync_pixels >= self.queue_pixels):
            raise self._overloaded()

    @contextmanager
    def admitted(self, pixels: int) -> Iterator[None]:
        """Holds a synchronous request's place (decoding, tiles and encoding) within the queue's count and pixel
        budget; raises Overloaded (503 with Retry-After) when there is none."""
        with self._condition:
            over_pixels = self._sync_count > 0 and self._sync_pixels + pixels > self.queue_pixels
            if self._sync_count >= self.capacity or over_pixels:
                raise self._overloaded()
            self._sync_count += 1
            self._sync_pixels += pixels
        self._changed()
        try:
            yield
        finally:
            with self._condition:
                self._sync_count -= 1
                self._sync_pixels -= pixels
            self._changed()

    def submit(self, work: Work[T], kind: str = "sync", pixels: int = 0) -> Task[T]:
        """Queues `work` (a sync request's place is held by `admitted`)."""
        task: Task[T] = Task(work, kind, pixels)
        with self._condition:
            task.sequence = next(self._sequence)
            task.served = self._clock.get(kind, 0.0)
            self._active.add(task)
            self._ready.append(task)
            self._condition.notify()
        self._changed()
        return task

    async def run(self, work: Work[T], pixels: int, is_disconnected: Callable[[], Any] | None = None) -> T:
        """Runs a synchronous request's work and returns its result; cancels it when the client goes away
        (`is_disconnected`, an awaitable returning when the client has disconnected) or this coroutine is
        cancelled."""
        task = self.submit(work, "sync", pixels)
        result = asyncio.wrap_future(task.future)
        watcher = asyncio.ensure_future(is_disconnected()) if is_disconnected is not None else None
        try:
            if watcher is None:
                return await result
            done, _ = await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if result in done:
                return result.result()
            self.cancel(task, "disconnect")
            return await result  # raises Cancelled once the running tile (if any) ends
        except asyncio.CancelledError:
            self.cancel(task, "disconnect")
            raise
        except Cancelled as exc:
            if exc.reason == "disconnect":
                raise ClientDisconnected("the client disconnected; its remaining tiles were not run") from exc
            raise NotReady(
                "the server is shutting down; retry", headers={"Retry-After": str(self.retry_after_s)}
            ) from exc
        finally:
            if watcher is not None:
                watcher.cancel()

    def cancel(self, task: Task[Any], reason: str) -> bool:
        """Stops `task` before its next tile; True when it had not finished."""
        with self._condition:
            if task.finished or task.cancel_reason is not None:
                return False
            task.cancel_reason = reason
            if not task.running and task in self._ready:
                self._ready.remove(task)
                self._finish(task)
                _settle(task.future, error=Cancelled(reason))
                self._count_cancel(task, reason)
                task.work.close()
        self._changed()
        return True

    # ---------- workers ----------

    def _pick(self) -> Task[Any] | None:
        """The next task to run a tile of (under the lock), or None when none waits."""
        if not self._ready:
            return None
        sync = [task for task in self._ready if task.kind == "sync"]
        jobs = [task for task in self._ready if task.kind != "sync"]
        if sync and (not jobs or self._sync_streak < self.job_every):
            candidates = sync
            self._sync_streak = self._sync_streak + 1 if jobs else 0
        else:
            candidates = jobs
            self._sync_streak = 0
        task = min(candidates, key=lambda t: (t.served, t.sequence))
        self._ready.remove(task)
        task.running = True
        self._clock[task.kind] = max(self._clock.get(task.kind, 0.0), task.served)
        return task

    def _finish(self, task: Task[Any]) -> None:
        """Bookkeeping of a task that ends (under the lock)."""
        task.running = False
        task.finished = True
        self._active.discard(task)

    def _count_cancel(self, task: Task[Any], reason: str) -> None:
        if self.metrics is not None:
            self.metrics.cancelled.labels(reason=reason, kind=task.kind).inc()

    def _worker(self) -> None:
        while True:
            with self._condition:
                task = self._pick()
                while task is None:
                    if self._stopping:
                        return
                    self._condition.wait()
                    task = self._pick()
            start = time.perf_counter()
            outcome: tuple[str, Any] = ("more", None)
            try:
                pixels = next(task.work)
            except StopIteration as stop:
                outcome = ("done", stop.value)
            except BaseException as exc:  # the task's own failure (bad option, model error): its answer
                outcome = ("failed", exc)
            else:
                task.served += pixels
                task.tiles += 1
                if self.metrics is not None:
                    self.metrics.tiles.labels(kind=task.kind).inc()
                    seconds = time.perf_counter() - start
                    self.metrics.tile_seconds.labels(kind=task.kind).observe(seconds)
                    if seconds > self._longest.get(task.kind, 0.0):
                        self._longest[task.kind] = seconds
                        self.metrics.tile_seconds_max.labels(kind=task.kind).set(seconds)
            with self._condition:
                kind, value = outcome
                if kind == "more" and task.cancel_reason is not None:
                    kind, value = "cancelled", Cancelled(task.cancel_reason)
                if kind == "more" and self._stopping:
                    kind, value = "cancelled", Cancelled("shutdown")
                if kind == "more":
                    task.running = False
                    self._ready.append(task)
                    self._condition.notify()
                else:
                    self._finish(task)
            if kind == "done":
                _settle(task.future, result=value)
            elif kind in ("failed", "cancelled"):
                if kind == "cancelled":
                    task.work.close()
                    self._count_cancel(task, value.reason)
                _settle(task.future, error=value)
            self._changed()

    def _changed(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._sync_count)
            self.metrics.tasks.set(len(self._active))

    def shutdown(self) -> None:
        """Cancels waiting tasks, lets running tiles end, and stops the threads."""
        with self._condition:
            self._stopping = True
            waiting = list(self._ready)
            self._ready.clear()
            for task in waiting:
                self._finish(task)
            self._condition.notify_all()
        for task in waiting:
            task.work.close()
            _settle(task.future, error=Cancelled("shutdown"))
        for thread in self._threads:
            thread.join(timeout=60)
