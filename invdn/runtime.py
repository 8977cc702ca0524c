"""Process-level settings: how many torch threads to use."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

import torch


def _cgroup_cpu_limit() -> float | None:
    """CPUs allowed by a cgroup quota (docker --cpus), or None when there is no quota."""
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may use: CPU affinity, capped by a cgroup CPU quota (containers) when there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, int(limit)))
    return max(1, cores)


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


def bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX). Elsewhere (AVX2) oneDNN emulates bf16,
    measured 9.8x slower than fp32 for InvDN, so `auto` precision picks fp32 there."""
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(checker()) if checker is not None else False


def auto_precision(device: str = "cpu") -> str:
    """The fastest safe precision for a device: bf16 on CPUs with native bf16 and on CUDA, else fp32."""
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if bf16_native() else "fp32"


_M_TRIM_THRESHOLD = -1  # glibc mallopt parameter numbers
_M_MMAP_THRESHOLD = -3
_allocator_tuned: bool | None = None


def tune_allocator(threshold: int = 1 << 30) -> bool:
    """Serve allocations below `threshold` bytes from the heap and keep freed memory; once per process.

    A process-wide setting, so the applications call it (the inference engine, the trainer, the benchmarks), never a
    model: a convolution's 16-128 MB output then no longer costs thousands of page faults on every call (without it
    large images ran up to ~2x slower per pixel than small ones). Returns whether it applied (glibc on Linux only;
    set INVDN_NO_MALLOC_TUNING=1 to opt out).
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if os.environ.get("INVDN_NO_MALLOC_TUNING") or platform.system() != "Linux":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
    _allocator_tuned = ok
    return ok
