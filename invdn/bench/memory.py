"""Memory benchmark of one InvDN training step, plain autograd against memory-saving backprop.

One step = encode, decode with a sampled z, an L1 + L2 loss, backward. For each depth and mode we record
- bytes saved for backward (counted by `torch.autograd.graph.saved_tensors_hooks`),
- peak process memory (max RSS of a fresh child process running only that configuration),
- step time (best of N, measured in this process with plain and memory-saving interleaved) as a ratio to plain,
- on CUDA, `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from invdn.models.invdn import InvDN, InvDNConfig


@dataclass
class MemoryRow:
    blocks_per_level: int
    mode: str  # "plain" or "memory-saving"
    saved_bytes: int  # bytes of tensors autograd saved for backward
    peak_rss_bytes: int  # peak resident memory of a child process doing one step
    step_seconds: float  # best of `repeats`
    time_ratio_to_plain: float
    cuda_max_allocated: int | None


def _loss(model: InvDN, x: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    lr, z, size = model.encode(x)
    out = model.decode(lr, model.sample_latent(lr, generator), size)
    return (out - target).abs().mean() + ((out - target) ** 2).mean()


def _step(model: InvDN, x: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> None:
    _loss(model, x, target, generator).backward()


def _setup(blocks: int, memory_saving: bool, batch: int, size: int, device: str):
    torch.manual_seed(0)
    model = InvDN(InvDNConfig(blocks_per_level=blocks, memory_saving=memory_saving)).to(device)
    x = torch.rand(batch, 3, size, size, device=device)
    target = torch.rand(batch, 3, size, size, device=device)
    return model, x, target, torch.Generator(device=device).manual_seed(0)


def saved_bytes(blocks: int, memory_saving: bool, batch: int, size: int, device: str) -> int:
    model, x, target, gen = _setup(blocks, memory_saving, batch, size, device)
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(model, x, target, gen)  # count what the forward pass keeps, not backward's scratch
    loss.backward()
    return total


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux); a fresh exec inherits the parent's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_peak(blocks: int, memory_saving: bool, batch: int, size: int, device: str) -> dict:
    """Run in a fresh process: one step, then report peak RSS (and CUDA peak)."""
    model, x, target, gen = _setup(blocks, memory_saving, batch, size, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _reset_peak_rss()
    _step(model, x, target, gen)
    peak = _peak_rss()
    cuda = torch.cuda.max_memory_allocated() if device == "cuda" else None
    return {"peak_rss_bytes": peak, "cuda_max_allocated": cuda}


def _peak_in_child(blocks: int, memory_saving: bool, batch: int, size: int, device: str) -> dict:
    code = (
        "import json, torch; from invdn.bench.memory import child_peak; "
        f"torch.set_num_threads({torch.get_num_threads()}); "
        f"print(json.dumps(child_peak({blocks}, {memory_saving}, {batch}, {size}, {device!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_time(blocks: int, memory_saving: bool, batch: int, size: int, device: str) -> float:
    model, x, target, gen = _setup(blocks, memory_saving, batch, size, device)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    _step(model, x, target, gen)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(
    depths: tuple[int, ...] = (2, 4, 8, 16, 32),
    batch: int = 4,
    size: int = 96,
    repeats: int = 3,
    device: str = "cpu",
) -> list[MemoryRow]:
    rows = []
    for blocks in depths:
        times = {False: float("inf"), True: float("inf")}
        for _ in range(repeats):  # interleave the two modes so machine load hits both alike
            for ms in (False, True):
                times[ms] = min(times[ms], step_time(blocks, ms, batch, size, device))
        for ms in (False, True):
            peak = _peak_in_child(blocks, ms, batch, size, device)
            rows.append(
                MemoryRow(
                    blocks_per_level=blocks,
                    mode="memory-saving" if ms else "plain",
                    saved_bytes=saved_bytes(blocks, ms, batch, size, device),
                    peak_rss_bytes=peak["peak_rss_bytes"],
                    step_seconds=times[ms],
                    time_ratio_to_plain=times[ms] / times[False],
                    cuda_max_allocated=peak["cuda_max_allocated"],
                )
            )
    return rows


def format_table(rows: list[MemoryRow]) -> str:
    lines = [
        f"{'blocks/level':>12} {'mode':<14} {'saved for bwd':>14} {'peak RSS':>10} {'step s':>8} "
        f"{'time/plain':>10}{'  cuda peak' if rows and rows[0].cuda_max_allocated is not None else ''}"
    ]
    for r in rows:
        cuda = f" {r.cuda_max_allocated / 2**20:9.0f}M" if r.cuda_max_allocated is not None else ""
        lines.append(
            f"{r.blocks_per_level:>12} {r.mode:<14} {r.saved_bytes / 2**20:12.1f}M "
            f"{r.peak_rss_bytes / 2**20:9.0f}M {r.step_seconds:8.3f} {r.time_ratio_to_plain:10.2f}{cuda}"
        )
    return "\n".join(lines)


def summary(rows: list[MemoryRow]) -> dict:
    ms = {r.blocks_per_level: r for r in rows if r.mode == "memory-saving"}
    plain = {r.blocks_per_level: r for r in rows if r.mode == "plain"}
    out = {}
    if 2 in ms and 32 in ms:
        out["saved_32_over_2_memory_saving"] = ms[32].saved_bytes / ms[2].saved_bytes
    if 8 in ms:
        out["plain_over_memory_saving_saved_at_8"] = plain[8].saved_bytes / ms[8].saved_bytes
    out["max_time_ratio"] = max(r.time_ratio_to_plain for r in ms.values())
    return out


def as_json(rows: list[MemoryRow]) -> str:
    return json.dumps({"rows": [asdict(r) for r in rows], "summary": summary(rows)}, indent=2)
