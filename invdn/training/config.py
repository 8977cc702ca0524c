"""What a training run is asked to do: `TrainConfig`, and building it from `invdn train`'s options (durations as
text, the precision choice, the run name)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from invdn.training.noise import USERS_FILES_NOISE

DEFAULT_NOISE = USERS_FILES_NOISE  # colour and grey AWGN, Poisson-Gaussian, camera + JPEG; all saved to 8 bits
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Every setting of a training run (saved as the run's config.json and in each checkpoint)."""

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
    channels_last: bool = True  # channels-last 4-D weights and batches (a speed switch: +2 % px/s, AVX-512 bf16)
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
    scales: tuple[float, ...] = (1.0,)  # patch scales drawn per patch (ImageFolder; DnCNN: 1, 0.9, 0.8, 0.7)
    snapshot_every: int = 0  # also keep the main weights every this many steps in snapshots/ (0 = never)
    # the main network's architecture (the model_args of the checkpoint it resumes or the --init-from file; None: the
    # registry default), filled by the trainer; InvDN-LC's task builds it, so a deepened model (latent_clean.deepen)
    # trains as it is; the other tasks take their architecture from their own fields
    model_args: dict | None = None

    @classmethod
    def from_cli(
        cls,
        *,
        model: str,
        data: Sequence[str],
        name: str | None,
        precision: str = "auto",
        bf16: bool = False,
        time_budget: str | float | None = None,
        checkpoint_every: str | float = "5m",
        **fields: object,
    ) -> TrainConfig:
        """The config of `invdn train`'s options: `model` may be an alias, `name` defaults to the model's name,
        durations are text ('2h', '90m'), `bf16` (the --bf16 flag) overrides `precision`, which `choose_precision`
        resolves; `fields` are the other TrainConfig fields as they are. ValueError for an unreadable duration."""
        from invdn.models import registry

        canonical = registry.get(model).name
        memory_saving = bool(fields.get("memory_saving", False))
        device = str(fields.get("device", "cpu"))
        chosen = choose_precision("bf16" if bf16 else precision, memory_saving, device)
        return cls(
            model=canonical,
            data=list(data),
            name=name or canonical,
            bf16=chosen == "bf16",
            time_budget=parse_duration(time_budget),
            checkpoint_every=parse_duration(checkpoint_every),
            **fields,  # type: ignore[arg-type]
        )


def choose_precision(precision: str, memory_saving: bool, device: str) -> str:
    """The precision to train in, "fp32" or "bf16": `auto` is bf16 where the device computes it natively
    (`invdn.runtime.auto_precision`) and never with memory-saving backprop; "fp32" and "bf16" stay as asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    from invdn.runtime import auto_precision

    return "fp32" if memory_saving else auto_precision(device)


def emulated_bf16_warning(config: TrainConfig) -> str | None:
    """A warning when the run asks for bf16 on a CPU without native bf16 (oneDNN emulates it, about 10x slower)."""
    if not config.bf16 or config.device != "cpu":
        return None
    from invdn.runtime import bf16_native

    return None if bf16_native() else "this CPU has no native bf16; oneDNN emulates it (about 10x slower)"


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
