"""One training loop for InvDN and DANet.

A model plugs in through a *task* object (`InvDNTask`, `DANetTask`):

    task.modules:    dict[str, nn.Module]     "main" is the network that ships
    task.optimizers: dict[str, Optimizer]     one per trained module, same keys
    task.step(noisy, clean) -> dict[str, float]   zero_grad, forward, backward, grad_sync, clip, step
    task.state_dict() / load_state_dict()     optional extra state (e.g. DANet's critic schedule)

The trainer owns data, learning-rate schedules, bf16 autocast, checkpoints, resume, time budget, validation,
logging and data parallelism. Every batch is a pure function of (seed, step, rank): a resumed run sees exactly the
batches and latent draws the uninterrupted run would have seen, so resuming is bit-exact on the same machine.

Checkpoints: runs/NAME/checkpoint/ holds one safetensors file per module (the "main" one with its model_args,
so it is also a usable weights file) and state.pt (optimizer, schedule, step, RNG states, config), read back with
`torch.load(weights_only=True)`. A checkpoint is written to a temporary folder and renamed into place, so a run
killed at any moment leaves the previous checkpoint intact. The best validation checkpoint is kept in best/.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from invdn.training.data import ImageFolder, NoisyPatches
from invdn.training.noise import USERS_FILES_NOISE, make_noise, seed_from

DEFAULT_NOISE = USERS_FILES_NOISE  # colour and grey AWGN, Poisson-Gaussian, camera + JPEG; all saved to 8 bits


@dataclass
class TrainConfig:
    model: str = "invdn"  # a registry name or alias (invdn.models.registry): "invdn", "invdn-paper", "danet-r"
    data: list[str] = field(default_factory=list)  # folders of clean training images
    noise: str = DEFAULT_NOISE  # noise spec (invdn.training.noise.make_noise); the default is the blind training mix
    name: str = "run"  # run folder name under runs_dir
    runs_dir: str = "runs"  # where run folders live
    patch: int = 128  # training patch size (DANet's dual mode needs 128)
    batch: int = 8  # global batch size (split over data-parallel ranks)
    lr: float | None = None  # learning rate; None = the model's default (InvDN-LC and InvDN 2e-4, DANet 1e-4)
    schedule: str = "cosine"  # "cosine" (to 1 % at total_steps) or "step" (halve at 50/75/90 %)
    total_steps: int = 200_000  # length of the schedule
    max_steps: int | None = None  # stop after this step (None: run until time budget or total_steps)
    time_budget: float | None = None  # seconds of training in this invocation; stops at a checkpoint
    checkpoint_every: float = 300.0  # seconds between checkpoints
    val_dir: str | None = None  # folder of clean images for validation PSNR
    val_noise: str = "awgn:25:clip8"  # noise for validation images (seeded per image)
    val_every: int = 500  # steps between validations
    val_limit: int = 8  # validation images used
    bf16: bool = False  # bf16 autocast for the forward passes
    memory_saving: bool = False  # invdn-paper: RevNet-style backprop
    blocks_per_level: int = 8  # invdn-paper depth (paper: 8)
    sobel_weight: float = 0.1  # invdn-paper backward loss: weight of the Sobel-gradient L1 term
    ssim_weight: float = 1.0  # invdn-paper backward loss: weight of the (1 - SSIM) term (0: Charbonnier + Sobel only)
    danet_mode: str = "l1"  # DANet: "l1" (R alone) or "dual" (the paper's adversarial training)
    seed: int = 0  # seeds data, noise and latent draws
    workers: int = 0  # DataLoader worker processes (0 = main process)
    device: str = "cpu"  # "cpu" or "cuda"
    log_every: int = 10  # steps between metric lines
    init_from: str | None = None  # start the main module from this weights file (when not resuming)
    patches_per_image: int = 8  # patches per image per epoch
    snapshot_every: int = 0  # also keep the main weights every this many steps in snapshots/ (0 = never)


def parse_duration(text: str | float | None) -> float | None:
    """'2h', '90m', '1h30m', '45s', '120' (seconds) -> seconds."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"cannot read duration {text!r}; use e.g. 2h, 90m, 1h30m, 45s")
    return sum(float(a) * {"h": 3600, "m": 60, "s": 1}[b] for a, b in parts)


def lr_factor(schedule: str, step: int, total: int) -> float:
    t = min(step / max(1, total), 1.0)
    if schedule == "cosine":
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "step":
        return 0.5 ** sum(t >= m for m in (0.5, 0.75, 0.9))
    raise ValueError(f"unknown schedule {schedule!r}; use cosine or step")


class StepBatches(Dataset):
    """Item k is this rank's share of the batch of global step k: (noisy, clean), each (b, 3, P, P).

    The images of a step come from a seeded permutation of the whole training set per epoch, and each item's
    crop, flip and noise from generators seeded by (seed, epoch, index): nothing depends on workers or history.
    """

    def __init__(self, folders: list[ImageFolder], noise: str, batch: int, rank: int, world: int, seed: int):
        if batch % world:
            raise ValueError(f"batch {batch} must be a multiple of the number of processes {world}")
        self.sets = [NoisyPatches(f, make_noise(noise)) for f in folders]
        self.sizes = [len(s) for s in self.sets]
        self.total = sum(self.sizes)
        if self.total == 0:
            raise ValueError("no training images found in " + ", ".join(str(f.root) for f in folders))
        self.batch, self.rank, self.world, self.seed = batch, rank, world, seed
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:
        return 2**62

    def _locate(self, flat: int) -> tuple[int, int]:
        epoch, pos = divmod(flat, self.total)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(seed_from(self.seed, "perm", epoch))
            self._perm, self._perm_epoch = torch.randperm(self.total, generator=g), epoch
        index = int(self._perm[pos])
        for s, size in enumerate(self.sizes):
            if index < size:
                return epoch, s * (1 << 40) + index
            index -= size
        raise IndexError(flat)  # pragma: no cover

    def __getitem__(self, step: int) -> tuple[Tensor, Tensor]:
        per_rank = self.batch // self.world
        noisy, clean = [], []
        for j in range(per_rank):
            epoch, code = self._locate(step * self.batch + self.rank * per_rank + j)
            s, index = divmod(code, 1 << 40)
            self.sets[s].set_epoch(epoch)
            n, c = self.sets[s][index]
            noisy.append(n)
            clean.append(c)
        return torch.stack(noisy), torch.stack(clean)


def make_task(cfg: TrainConfig, grad_sync: Callable[[nn.Module], None] | None, device: torch.device):
    """The training task of `cfg.model` (a registry name or alias), from its registry entry."""
    from invdn.models import registry

    return registry.get(cfg.model).task(cfg, grad_sync, device)


def _all_reduce_grads(module: nn.Module) -> None:
    world = dist.get_world_size()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True) -> None:
        self.cfg = cfg
        self.distributed = dist.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cfg.device == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if cfg.device == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels
        else:
            self.device = torch.device(cfg.device)
        self.run_dir = Path(cfg.runs_dir) / cfg.name
        torch.manual_seed(seed_from(cfg.seed, "init"))  # the same initial weights for the same seed
        self.task = make_task(cfg, _all_reduce_grads if self.distributed else None, self.device)
        if self.distributed:  # every rank starts from rank 0's weights
            for module in self.task.modules.values():
                for t in module.state_dict().values():
                    dist.broadcast(t, 0)
        self.step = 0
        self.best_psnr = -math.inf
        self.elapsed_total = 0.0
        self.progress = progress and self.rank == 0
        if resume and (self.run_dir / "checkpoint" / "state.pt").exists():
            self.load_checkpoint(self.run_dir / "checkpoint")
        elif cfg.init_from:
            from invdn.models.weights import load_file_model

            src = load_file_model(cfg.init_from)
            self.task.modules["main"].load_state_dict(src.state_dict())
        folders = [
            ImageFolder(d, patch_size=cfg.patch, patches_per_image=cfg.patches_per_image, seed=cfg.seed)
            for d in cfg.data
        ]
        self.batches = StepBatches(folders, cfg.noise, cfg.batch, self.rank, self.world, cfg.seed)
        self._val = None

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, folder: Path) -> None:
        if self.rank != 0:
            return
        from invdn.models.weights import save

        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for key, module in self.task.modules.items():
            if key == "main":
                save(module, tmp / "main.safetensors", extra={"step": self.step})
            else:
                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                    str(tmp / f"{key}.safetensors"),
                )
        state = {
            "step": self.step,
            "best_psnr": self.best_psnr,
            "elapsed_total": self.elapsed_total,
            "optimizers": {k: o.state_dict() for k, o in self.task.optimizers.items()},
            "task": self.task.state_dict() if hasattr(self.task, "state_dict") else {},
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "config": json.dumps(asdict(self.cfg)),
        }
        torch.save(state, tmp / "state.pt")
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, folder: Path) -> None:
        for key, module in self.task.modules.items():
            state = load_file(str(folder / f"{key}.safetensors"), device=str(self.device))
            module.load_state_dict(state)
        state = torch.load(folder / "state.pt", weights_only=True, map_location="cpu")
        for key, opt in self.task.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        if hasattr(self.task, "load_state_dict") and state.get("task"):
            self.task.load_state_dict(state["task"])
        self.step = int(state["step"])
        self.best_psnr = float(state["best_psnr"])
        self.elapsed_total = float(state["elapsed_total"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    # ----------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> float | None:
        if not self.cfg.val_dir or self.rank != 0:
            return None
        from invdn.eval.metrics import psnr, quantize8
        from invdn.inference.engine import is_stochastic
        from invdn.training.data import FullImageFolder

        if self._val is None:
            self._val = FullImageFolder(self.cfg.val_dir, noise=self.cfg.val_noise, limit=self.cfg.val_limit)
        model = self.task.modules["main"]
        model.eval()
        scores = []
        for i in range(len(self._val)):
            item = self._val[i]
            noisy = item["noisy"].unsqueeze(0).to(self.device)
            gen = torch.Generator(device=self.device).manual_seed(seed_from("val", i))
            kwargs = {"generator": gen} if is_stochastic(model) else {}
            out = model.denoise(noisy, **kwargs).squeeze(0).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            clean = item["clean"].permute(1, 2, 0).numpy()
            scores.append(psnr(quantize8(out), quantize8(clean)))
        model.train()
        return float(np.mean(scores))

    # ----------------------------------------------------------------- the loop
    def _loader(self) -> Iterator[tuple[Tensor, Tensor]]:
        steps = range(self.step, 2**62)
        loader = DataLoader(
            self.batches,
            batch_size=None,
            sampler=steps,
            num_workers=self.cfg.workers,
            persistent_workers=False,
            prefetch_factor=4 if self.cfg.workers else None,
        )
        return iter(loader)

    def _log(self, row: dict) -> None:
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def _set_lr(self) -> None:
        factor = lr_factor(self.cfg.schedule, self.step, self.cfg.total_steps)
        for opt in self.task.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    def train(self) -> dict:
        cfg = self.cfg
        budget = cfg.time_budget
        invocation_start = start = time.monotonic()  # `start` begins the segment not yet in elapsed_total
        last_ckpt = start
        stop_at = cfg.max_steps if cfg.max_steps is not None else cfg.total_steps
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=stop_at,
                initial=self.step,
                unit="step",
                dynamic_ncols=True,
                disable=not os.isatty(2) and os.environ.get("INVDN_PROGRESS") != "1",
            )
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
        for module in self.task.modules.values():
            module.train()
        window_t, window_px, losses = time.monotonic(), 0, []
        data = self._loader()
        stats: dict[str, float] = {}
        while self.step < stop_at:
            noisy, clean = next(data)
            noisy, clean = noisy.to(self.device, non_blocking=True), clean.to(self.device, non_blocking=True)
            torch.manual_seed(seed_from(cfg.seed, "step", self.step, self.rank))  # latent draws, dual-mode noise
            self._set_lr()
            with autocast:
                stats = self.task.step(noisy, clean)
            self.step += 1
            if cfg.snapshot_every and self.step % cfg.snapshot_every == 0 and self.rank == 0:
                from invdn.models.weights import save

                save(
                    self.task.modules["main"],
                    self.run_dir / "snapshots" / f"step-{self.step:08d}.safetensors",
                    extra={"step": self.step},
                )
            window_px += noisy.numel() // noisy.shape[1] * self.world
            losses.append(stats["loss"])
            now = time.monotonic()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4g}")
            out_of_time = budget is not None and now - invocation_start >= budget
            last_step = out_of_time or self.step >= stop_at
            if self.step % cfg.log_every == 0 or (last_step and losses):  # the final step is always logged
                row = {
                    "step": self.step,
                    "time": self.elapsed_total + now - start,
                    "loss": float(np.mean(losses)),
                    "px_per_s": window_px / max(now - window_t, 1e-9),
                    "lr": next(iter(self.task.optimizers.values())).param_groups[0]["lr"],
                }
                row.update({k: v for k, v in stats.items() if k != "loss"})
                self._log(row)
                window_t, window_px, losses = now, 0, []
            if cfg.val_dir and self.step % cfg.val_every == 0:
                score = self.validate()
                if score is not None:
                    self._log({"step": self.step, "val_psnr": score})
                    if score > self.best_psnr:
                        self.best_psnr = score
                        self.save_checkpoint(self.run_dir / "best")
            if now - last_ckpt >= cfg.checkpoint_every or out_of_time or self.step >= stop_at:
                self.elapsed_total += now - start
                start = now
                self.save_checkpoint(self.run_dir / "checkpoint")
                if self.rank == 0:
                    plot_curves(self.run_dir)
                last_ckpt = time.monotonic()
                if out_of_time:
                    break
        if bar is not None:
            bar.close()
        return {"step": self.step, "last": stats, "best_val_psnr": self.best_psnr}


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(run_dir: Path) -> Path | None:
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
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, out)
    return out
