"""A training run's files: checkpoints (save and exact restore), metrics.jsonl and curves.png.

A checkpoint folder holds one safetensors file per module (the "main" one with its model_args, so it is also a
usable weights file) and state.pt (optimizer, schedule, step, RNG states, config), read back with
`torch.load(weights_only=True)`. It is written to a temporary folder and renamed into place, so a run killed at any
moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim import Optimizer

from invdn.io.atomic import swap_in_folder, write_atomic


@dataclass
class Progress:
    """Where a run stands: restored from a checkpoint with the weights."""

    step: int  # optimisation steps done
    best_psnr: float  # best validation PSNR so far (-inf before the first validation)
    elapsed_total: float  # seconds of training over every invocation


def save_checkpoint(
    folder: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, Optimizer],
    task_state: dict[str, Any],
    progress: Progress,
    config: dict[str, Any],
) -> None:
    """Write `modules`, `optimizers`, the task's own state, `progress`, the RNG states and `config` to `folder`,
    atomically (temporary folder, then rename)."""
    from invdn.models.weights import save

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for key, module in modules.items():
        if key == "main":
            save(module, tmp / "main.safetensors", extra={"step": progress.step})
        else:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                str(tmp / f"{key}.safetensors"),
            )
    state = {
        "step": progress.step,
        "best_psnr": progress.best_psnr,
        "elapsed_total": progress.elapsed_total,
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "task": task_state,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": json.dumps(config),
    }
    torch.save(state, tmp / "state.pt")
    swap_in_folder(tmp, folder)


def load_checkpoint(
    folder: Path, modules: dict[str, nn.Module], optimizers: dict[str, Optimizer], device: torch.device
) -> tuple[Progress, dict[str, Any]]:
    """Restore `modules`, `optimizers` and the RNG states from `folder`; returns the progress and the task's state."""
    for key, module in modules.items():
        module.load_state_dict(load_file(str(folder / f"{key}.safetensors"), device=str(device)))
    state = torch.load(folder / "state.pt", weights_only=True, map_location="cpu")
    for key, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][key])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    progress = Progress(int(state["step"]), float(state["best_psnr"]), float(state["elapsed_total"]))
    return progress, state.get("task") or {}


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one JSON line to run_dir/metrics.jsonl."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """Every row of run_dir/metrics.jsonl (none when the file does not exist)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(run_dir: Path) -> Path | None:
    """run_dir/curves.png: training loss and validation PSNR against step; None when there is nothing to plot."""
    rows = read_metrics(run_dir)
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_psnr" in r]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if train:
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
        axes[0].set_yscale("log")
    axes[0].set(title="training loss", xlabel="step")
    if val:
        axes[1].plot([r["step"] for r in val], [r["val_psnr"] for r in val], marker="o")
    axes[1].set(title="validation PSNR (dB)", xlabel="step")
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    write_atomic(out, buffer.getvalue(), overwrite=True)  # redrawn at every validation: replaces the last one
    return out
