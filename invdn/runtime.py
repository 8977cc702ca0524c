"""Process-level settings: how many torch threads to use."""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity / container limits where the OS reports them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def configure_threads(workers: int = 1, threads: int | None = None) -> int:
    """Set torch's intra-op threads so that workers x threads <= cores; return the thread count used.

    `threads` (or the INVDN_THREADS environment variable) overrides the computed value.
    """
    if threads is None and os.environ.get("INVDN_THREADS"):
        threads = int(os.environ["INVDN_THREADS"])
    if threads is None:
        threads = max(1, available_cores() // max(1, workers))
    torch.set_num_threads(threads)
    return threads
