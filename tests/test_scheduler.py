"""invdn_service.scheduler.TileScheduler on its own: the order tiles run in, cancellation, admission."""

from __future__ import annotations

import threading
import time

import pytest

from invdn_service.errors import Overloaded
from invdn_service.scheduler import Cancelled, TileScheduler


def steps(name: str, count: int, log: list[str], gate: threading.Event | None = None):
    """A task of `count` tiles of 100 pixels that logs each tile; the first waits for `gate`."""
    for index in range(count):
        if gate is not None and index == 0:
            gate.wait(timeout=10)
        log.append(name)
        yield 100
    return name


@pytest.fixture
def scheduler():
    scheduler = TileScheduler(workers=1, queue_size=64, queue_pixels=10**9, retry_after_s=1, job_every=3)
    yield scheduler
    scheduler.shutdown()


def test_sync_tiles_go_first_but_a_job_gets_one_tile_in_job_every_plus_one(scheduler):
    log: list[str] = []
    gate = threading.Event()
    blocker = scheduler.submit(steps("blocker", 1, log, gate), kind="sync")  # holds the only worker
    time.sleep(0.05)
    job = scheduler.submit(steps("job", 5, log), kind="job")
    requests = [scheduler.submit(steps(f"s{index}", 1, log), kind="sync") for index in range(9)]
    gate.set()
    for task in (blocker, job, *requests):
        task.future.result(timeout=10)
    order = log[1:]
    assert order[:8] == ["s0", "s1", "s2", "job", "s3", "s4", "s5", "job"]
    assert order.count("job") == 5
    # a job is never starved: no run of more than job_every synchronous tiles while it waits
    last_job = max(i for i, name in enumerate(order) if name == "job")
    runs = "".join("j" if name == "job" else "s" for name in order[: last_job + 1]).split("j")
    assert max(len(run) for run in runs) <= 3


def test_tasks_of_one_class_share_by_pixels_served(scheduler):
    log: list[str] = []
    gate = threading.Event()
    blocker = scheduler.submit(steps("blocker", 1, log, gate), kind="job")
    time.sleep(0.05)
    a = scheduler.submit(steps("a", 3, log), kind="job")
    b = scheduler.submit(steps("b", 3, log), kind="job")
    gate.set()
    for task in (blocker, a, b):
        task.future.result(timeout=10)
    assert log[1:] == ["a", "b", "a", "b", "a", "b"]


def test_a_cancelled_task_runs_no_further_tile(scheduler):
    log: list[str] = []
    gate = threading.Event()
    task = scheduler.submit(steps("job", 50, log, gate), kind="job")
    time.sleep(0.05)
    assert scheduler.cancel(task, "deleted")
    gate.set()
    with pytest.raises(Cancelled, match="deleted"):
        task.future.result(timeout=10)
    assert log == ["job"]  # only the tile that was already running
    assert scheduler.active == 0 and not scheduler.cancel(task, "deleted")


def test_admission_by_count_and_pixels():
    scheduler = TileScheduler(workers=1, queue_size=1, queue_pixels=1000, retry_after_s=5)
    try:
        with scheduler.admitted(600):
            with pytest.raises(Overloaded):  # 600 + 600 > 1000
                with scheduler.admitted(600):
                    pass
            with scheduler.admitted(300):
                assert scheduler.depth == 2
                with pytest.raises(Overloaded):  # count: 1 worker + 1 waiting
                    with scheduler.admitted(1):
                        pass
        assert scheduler.depth == 0
        with scheduler.admitted(5000):  # alone, any size is admitted
            pass
    finally:
        scheduler.shutdown()
