"""Process-level settings: how many torch threads to use."""

from __future__ import annotations

import os

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
