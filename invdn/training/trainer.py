"""One training loop for InvDN and DANet.

A model plugs in through a *task* object (`InvDNTask`, `DANetTask`):

    task.modules:    dict[str, nn.Module]     "main" is the network that ships
    task.optimizers: dict[str, Optimizer]     one per trained module, same keys
    task.step(noisy, clean) -> dict[str, float]   zero_grad, forward, backward, grad_sync, clip, step
    task.state_dict() / load_state_dict()     optional extra state (e.g. DANet's critic schedule)

The trainer owns data, learning-rate schedules, bf16 autocast, checkpoints, resume, time budget, validation,
logging and data parallelism. Every batch is a pure function of (seed, step, rank): a resumed run sees exactly the
batches and latent draws the uninterrupted run would have seen, so resuming is bit-exact on the same machine.

The settings are `invdn.training.config.TrainConfig`; the run's files (checkpoints in runs/NAME/checkpoint/, the
best validation checkpoint in best/, metrics.jsonl, curves.png) are written by `invdn.training.checkpoint`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from invdn.runtime import tune_allocator
from invdn.training.checkpoint import Progress, append_metrics, load_checkpoint, plot_curves, save_checkpoint
from invdn.training.config import TrainConfig
from invdn.training.data import ImageFolder, NoisyPatches
from invdn.training.noise import make_noise, seed_from


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
            tune_allocator()  # keep large freed buffers in the process (invdn.runtime)
        self.run_dir = Path(cfg.runs_dir) / cfg.name
        resuming = resume and (self.run_dir / "checkpoint" / "state.pt").exists()
        source = self.run_dir / "checkpoint" / "main.safetensors" if resuming else cfg.init_from
        if source and cfg.model_args is None:  # build the architecture of the weights it starts from
            from invdn.models.weights import read_model_args

            self.cfg = cfg = replace(cfg, model_args=read_model_args(source))
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
        if resuming:
            self.load_checkpoint(self.run_dir / "checkpoint")
        elif cfg.init_from:
            from invdn.models.weights import load_file_model

            src = load_file_model(cfg.init_from)
            self.task.modules["main"].load_state_dict(src.state_dict())
        if cfg.channels_last:  # in place: the optimisers keep the same parameters
            for module in self.task.modules.values():
                module.to(memory_format=torch.channels_last)
        folders = [
            ImageFolder(
                d, patch_size=cfg.patch, patches_per_image=cfg.patches_per_image, seed=cfg.seed, scales=cfg.scales
            )
            for d in cfg.data
        ]
        self.batches = StepBatches(folders, cfg.noise, cfg.batch, self.rank, self.world, cfg.seed)
        self._val = None

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, folder: Path) -> None:
        """Write the run's state to `folder` (rank 0 only; see `invdn.training.checkpoint.save_checkpoint`)."""
        if self.rank != 0:
            return
        task_state = self.task.state_dict() if hasattr(self.task, "state_dict") else {}
        progress = Progress(self.step, self.best_psnr, self.elapsed_total)
        save_checkpoint(folder, self.task.modules, self.task.optimizers, task_state, progress, asdict(self.cfg))

    def load_checkpoint(self, folder: Path) -> None:
        """Continue exactly where the checkpoint in `folder` stopped: weights, optimizers, task, step, RNG."""
        progress, task_state = load_checkpoint(folder, self.task.modules, self.task.optimizers, self.device)
        if hasattr(self.task, "load_state_dict") and task_state:
            self.task.load_state_dict(task_state)
        self.step, self.best_psnr, self.elapsed_total = progress.step, progress.best_psnr, progress.elapsed_total

    # ----------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> float | None:
        if not self.cfg.val_dir or self.rank != 0:
            return None
        from invdn.eval.metrics import psnr, quantize8
        from invdn.inference.engine import is_stochastic
        from invdn.inference.fast import for_inference
        from invdn.training.data import FullImageFolder

        if self._val is None:
            self._val = FullImageFolder(self.cfg.val_dir, noise=self.cfg.val_noise, limit=self.cfg.val_limit)
        model = self.task.modules["main"]
        model.eval()
        runner = for_inference(model)  # the inference engine's optimised variant, same results
        scores = []
        for i in range(len(self._val)):
            item = self._val[i]
            noisy = item["noisy"].unsqueeze(0).to(self.device)
            gen = torch.Generator(device=self.device).manual_seed(seed_from("val", i))
            kwargs = {"generator": gen} if is_stochastic(model) else {}
            out = runner.denoise(noisy, **kwargs).squeeze(0).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
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
        if self.rank == 0:
            append_metrics(self.run_dir, row)

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
            if cfg.channels_last:
                noisy = noisy.contiguous(memory_format=torch.channels_last)
                clean = clean.contiguous(memory_format=torch.channels_last)
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
