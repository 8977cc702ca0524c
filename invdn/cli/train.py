"""`invdn train`: train InvDN or DANet (single process, or data parallel under torchrun)."""

from __future__ import annotations

import click

from invdn.models import registry
from invdn.training.config import DEFAULT_NOISE


def _scales(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    from invdn.training.data import check_scales

    try:
        return check_scales(float(v) for v in value.split(","))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None


@click.command()
@click.option(
    "--model",
    type=click.Choice(registry.choices()),
    default=registry.DEFAULT,
    help="Network to train (a registry name): " + ", ".join(registry.names()) + ".",
)
@click.option(
    "--data",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of clean training images (repeatable).",
)
@click.option("--noise", default=DEFAULT_NOISE, help="Training noise spec (see invdn.training.noise).")
@click.option("--name", default=None, help="Run name (folder under --runs-dir); default: the model name.")
@click.option("--runs-dir", default="runs", help="Folder holding run folders.")
@click.option("--resume", is_flag=True, help="Continue from runs/NAME/checkpoint exactly where it stopped.")
@click.option(
    "--init-from",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Start from these weights (safetensors) when not resuming; InvDN-LC takes the file's architecture "
    "(e.g. a cleaner deepened by invdn.models.latent_clean.deepen), and --resume keeps it.",
)
@click.option("--time-budget", default=None, help="Stop cleanly at a checkpoint after this long (e.g. 2h, 90m).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps in total.")
@click.option("--total-steps", type=int, default=200_000, help="Length of the learning-rate schedule.")
@click.option("--schedule", type=click.Choice(["cosine", "step"]), default="cosine", help="Learning-rate schedule.")
@click.option("--lr", type=float, default=None, help="Learning rate (default: InvDN 2e-4, DANet 1e-4).")
@click.option("--batch", type=int, default=8, help="Global batch size.")
@click.option("--patch", type=int, default=128, help="Patch size in pixels.")
@click.option("--patches-per-image", type=int, default=8, help="Patches drawn per image per epoch.")
@click.option(
    "--scales",
    callback=_scales,
    default="1",
    show_default=True,
    help="Comma-separated patch scales in (0, 1], one drawn per patch: the crop is PATCH/s wide, shrunk to PATCH "
    "(denser texture; DnCNN trained on 1,0.9,0.8,0.7).",
)
@click.option("--blocks", "blocks_per_level", type=int, default=8, help="InvDN coupling blocks per level.")
@click.option("--memory-saving/--no-memory-saving", default=False, help="InvDN: RevNet-style backprop.")
@click.option("--danet-mode", type=click.Choice(["l1", "dual"]), default="l1", help="DANet training mode.")
@click.option(
    "--sobel-weight",
    type=click.FloatRange(min=0),
    default=0.1,
    show_default=True,
    help="InvDN: weight of the Sobel-gradient L1 term of the backward loss.",
)
@click.option(
    "--ssim-weight",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="InvDN: weight of the (1 - SSIM) term of the backward loss (0: Charbonnier + Sobel only).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Forward passes in bf16 autocast or fp32; auto: bf16 where the CPU (or GPU) has it natively, and never "
    "with --memory-saving.",
)
@click.option("--bf16", is_flag=True, help="Same as --precision bf16.")
@click.option(
    "--channels-last/--no-channels-last",
    default=True,
    show_default=True,
    help="Channels-last memory format for weights and batches: a speed switch (2 percent more pixels/s on an "
    "AVX-512 CPU in bf16: benchmarks/train_memory_format.py).",
)
@click.option(
    "--val",
    "val_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of clean images for validation PSNR.",
)
@click.option("--val-noise", default="awgn:25:clip8", help="Validation noise spec.")
@click.option("--val-every", type=int, default=500, help="Steps between validations.")
@click.option("--val-limit", type=int, default=8, help="Validation images used.")
@click.option("--checkpoint-every", default="5m", help="Time between checkpoints.")
@click.option("--snapshot-every", type=int, default=0, help="Keep the main weights every N steps (0 = never).")
@click.option("--log-every", type=int, default=10, help="Steps between metric lines.")
@click.option("--workers", type=int, default=0, help="Data-loading worker processes.")
@click.option("--threads", type=int, default=None, help="Torch threads (default: cores / processes).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", help="Device.")
@click.option("--seed", type=int, default=0, help="Seed for data, noise and latent draws.")
def train(**opts) -> None:
    """Train a registry model (InvDN-LC, the paper's InvDN, DANet-R).

    Run under `torchrun --nproc-per-node N` for data parallelism."""
    import os

    import torch

    from invdn.runtime import configure_threads
    from invdn.training.config import TrainConfig, emulated_bf16_warning
    from invdn.training.trainer import Trainer

    world = int(os.environ.get("WORLD_SIZE", "1"))
    configure_threads(workers=world, threads=opts.pop("threads"))  # DataLoader workers run 1 thread each
    resume = opts.pop("resume")
    config = TrainConfig.from_cli(**opts)
    warning = emulated_bf16_warning(config)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    trainer = Trainer(config, resume=resume)
    if trainer.rank == 0:
        click.echo(
            f"training {config.model} from step {trainer.step} in {trainer.run_dir} "
            f"({'bf16' if config.bf16 else 'fp32'}, {'channels-last' if config.channels_last else 'NCHW'}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()})",
            err=True,
        )
    result = trainer.train()
    if trainer.rank == 0:
        click.echo(
            f"stopped at step {result['step']}; last loss {result['last'].get('loss', float('nan')):.4g}; "
            f"best validation PSNR {result['best_val_psnr']:.2f} dB; checkpoint in {trainer.run_dir}"
        )
