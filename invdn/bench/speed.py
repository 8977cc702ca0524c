"""Speed benchmark: inference seconds per megapixel, achieved GFLOP/s against a reference convolution, training
pixels per second, all in one process on the same images, straightforward code against the optimised paths.

- Inference: every registry model (InvDN-LC, the paper's InvDN, DANet-R; fp32 and bf16, and the default model's
  8-way ensemble) at 0.25 MP (512x512) and 1 MP
  (1024x1024) through `model.denoise` on the whole image, and at 12 MP (4000x3000) through the tiling engine
  `invdn.inference.engine.Denoiser` (its automatic tile size); CBM3D (`bm3d` package) at 1 MP. The straightforward
  path (the model's own plain PyTorch) runs beside the optimised one (its `invdn.inference.fast` variant, which the
  engine uses) for before/after ratios; with `compile_sizes`, also `torch.compile` of the plain model (inductor,
  freezing), whose first call (compilation included) is reported apart.
- FLOPs come from `invdn.models.flops` (torch.utils.flop_counter); achieved GFLOP/s counts output pixels only (tile
  overlaps are extra work, not extra credit). `fraction_of_reference` divides by the rate of a 64->64 3x3
  convolution, channels-last, on a 1x64x256x256 float32 tensor measured in this process.
- Training (one code path: the models' own): one optimisation step of each registry model's real task
  (`invdn.training.trainer.make_task`: loss, backward,
  clip, Adam) on a batch of 8 96x96 patches, from the shipped weights; the paper InvDN also memory-saving; fp32 and
  bf16 autocast where the trainer allows it, plus how far bf16 gradients are from fp32 ones.
- bf16 rows run only where the CPU has native bf16 (`invdn.runtime.bf16_native`); elsewhere a note says why not.
- Clock: best of `repeats` wall-clock runs; with one thread, the CPU time of that thread instead, which other
  processes on a shared machine do not inflate (everything here computes on the calling thread).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from invdn.inference.engine import is_stochastic
from invdn.inference.fast import for_inference
from invdn.models.flops import flops_per_megapixel

SIZES = {0.25: (512, 512), 1.0: (1024, 1024), 12.0: (4000, 3000)}  # nominal megapixels -> (width, height)
SIGMA = 25.0  # noise of the benchmark images, 0-255 scale
TRAIN_BATCH, TRAIN_PATCH = 8, 96


@dataclass
class SpeedRow:
    method: str  # a registry label ("InvDN-LC", "InvDN (paper)", "DANet-R"), "... x8 ensemble", or "CBM3D"
    path: str  # "straightforward" (the model's code), "optimised" (invdn.inference.fast), "compiled", "-" (CBM3D)
    precision: str  # "fp32" or "bf16" (CPU autocast)
    megapixels: float  # nominal size: 0.25, 1 or 12
    width: int
    height: int
    tile: int | None  # tile side when run through invdn.inference.engine.Denoiser, else None (whole image)
    seconds: float  # best of the timed runs
    seconds_per_mp: float  # per output megapixel
    gflops_per_s: float | None  # FLOPs of the network on the output pixels / seconds
    fraction_of_reference: float | None  # gflops_per_s / the reference convolution's rate
    first_call_seconds: float | None = None  # wall time of the untimed first call (compiled: compilation included)


@dataclass
class TrainRow:
    model: str  # a registry label
    mode: str  # "plain" or "memory-saving" (InvDN paper), "l1" (DANet-R)
    precision: str  # "fp32" or "bf16" (autocast, as `invdn train --bf16`)
    step_seconds: float  # best of the timed steps
    pixels_per_s: float  # batch * patch^2 / step_seconds
    speedup: float  # over the fp32 step of the same model and mode


@dataclass
class SpeedReport:
    threads: int
    cpu_capability: str  # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, ...
    clock: str  # "thread-cpu" or "wall"
    reference_gflops_per_s: float
    rows: list[SpeedRow] = field(default_factory=list)
    training: list[TrainRow] = field(default_factory=list)
    bf16_gradients: dict = field(default_factory=dict)  # model -> {"cosine", "relative_error"}
    psnr: dict = field(default_factory=dict)  # bf16 PSNR cost, when a dataset was given
    notes: list[str] = field(default_factory=list)


class Timer:
    """Best-of-N timing with the clock chosen for the thread count."""

    def __init__(self, threads: int) -> None:
        self.clock = time.thread_time if threads == 1 else time.perf_counter
        self.name = "thread-cpu" if threads == 1 else "wall"

    def best(self, fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
        for _ in range(warmup):
            fn()
        best = math.inf
        for _ in range(max(1, repeats)):
            start = self.clock()
            fn()
            best = min(best, self.clock() - start)
        return best


def reference_gflops(timer: Timer, repeats: int = 5) -> float:
    """GFLOP/s of a 64->64 3x3 convolution, channels-last, on a 1x64x256x256 float32 tensor."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 256, 256, generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last) * 0.05
    b = torch.zeros(64)
    with torch.inference_mode():
        seconds = timer.best(lambda: F.conv2d(x, w, b, padding=1), repeats)
    return 2 * 64 * 64 * 9 * 256 * 256 / seconds / 1e9


def test_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A natural colour picture (scikit-image's astronaut) resized to width x height, with AWGN sigma 25."""
    from PIL import Image
    from skimage import data

    clean = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(clean, dtype=np.float32) / 255.0
    noise = np.random.default_rng(seed).standard_normal(pixels.shape).astype(np.float32) * (SIGMA / 255.0)
    return np.clip(pixels + noise, 0.0, 1.0)


def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def _runner(model: nn.Module, path: str) -> Callable[..., torch.Tensor]:
    """The denoise call of a path: the model's own, its inference variant, or torch.compile of the model's own."""
    if path == "optimised":
        return for_inference(model).denoise
    if path == "compiled":
        return torch.compile(model.denoise)  # inductor; freezing is switched on around the calls
    return model.denoise


def _whole_image_call(
    model: nn.Module, path: str, pixels: np.ndarray, precision: str, ensemble: bool
) -> Callable[[], object]:
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
    runner = _runner(model, path)
    seeded = is_stochastic(model) and path != "compiled"  # compiled: the global generator (dynamo takes no Generator)

    def run() -> object:
        with torch.inference_mode(), _autocast(precision):
            if seeded:
                return runner(x, ensemble=ensemble, generator=torch.Generator().manual_seed(0))
            return runner(x, ensemble=ensemble)

    return run


def inference_rows(
    models: dict[str, nn.Module],
    sizes: list[float],
    timer: Timer,
    reference: float,
    repeats: int,
    straightforward_sizes: list[float],
    ensemble_sizes: list[float],
    precisions: tuple[str, ...] = ("fp32", "bf16"),
    compile_sizes: tuple[float, ...] = (),
) -> list[SpeedRow]:
    import torch._inductor.config as inductor_config

    from invdn.inference.engine import Denoiser

    rows = []
    for mp in sizes:
        width, height = SIZES[mp]
        pixels = test_image(width, height)
        out_mp = width * height / 1e6
        for label, model in models.items():
            flops = flops_per_megapixel(model)
            variants = [("optimised", precision, False) for precision in precisions]
            if mp in straightforward_sizes:
                variants.insert(0, ("straightforward", "fp32", False))
            if model is models_first(models) and mp in ensemble_sizes:
                variants.append(("optimised", "fp32", True))
            if mp in compile_sizes and mp < 12:
                variants += [("compiled", precision, False) for precision in precisions]
            for path, precision, ensemble in variants:
                tile, first = None, None
                if mp >= 12:
                    denoiser = Denoiser(model, device="cpu", precision=precision, optimised=path == "optimised")
                    tile = denoiser.tile_size()

                    def run(denoiser: Denoiser = denoiser, ensemble: bool = ensemble, pixels=pixels) -> object:
                        return denoiser(pixels, ensemble=ensemble, seed=0)

                    seconds = timer.best(run, repeats=1, warmup=0)
                else:
                    call = _whole_image_call(model, path, pixels, precision, ensemble)
                    with inductor_config.patch(freezing=True):
                        start = time.perf_counter()
                        call()
                        first = time.perf_counter() - start
                        seconds = timer.best(call, repeats, warmup=0)
                work = flops * out_mp * (8 if ensemble else 1)
                gflops = work / seconds / 1e9
                rows.append(
                    SpeedRow(
                        method=label + (" x8 ensemble" if ensemble else ""),
                        path=path,
                        precision=precision,
                        megapixels=mp,
                        width=width,
                        height=height,
                        tile=tile,
                        seconds=seconds,
                        seconds_per_mp=seconds / out_mp,
                        gflops_per_s=gflops,
                        fraction_of_reference=gflops / reference,
                        first_call_seconds=first,
                    )
                )
    return rows


def models_first(models: dict[str, nn.Module]) -> nn.Module:
    """The first model of the run (the registry's default), the one whose ensemble is timed."""
    return next(iter(models.values()))


def cbm3d_row(timer: Timer, mp: float = 1.0) -> SpeedRow:
    from invdn.eval.methods import bm3d_denoise

    width, height = SIZES[mp]
    pixels = test_image(width, height)
    seconds = timer.best(lambda: bm3d_denoise(pixels, SIGMA / 255.0), repeats=1, warmup=0)
    out_mp = width * height / 1e6
    return SpeedRow("CBM3D", "-", "fp64", mp, width, height, None, seconds, seconds / out_mp, None, None)


# ---- training ----


def _training_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    from skimage import data

    clean = torch.from_numpy(data.astronaut().astype(np.float32) / 255.0).permute(2, 0, 1)
    gen = torch.Generator().manual_seed(seed)
    crops = []
    for _ in range(TRAIN_BATCH):
        top, left = (int(torch.randint(0, 512 - TRAIN_PATCH, (1,), generator=gen)) for _ in range(2))
        crops.append(clean[:, top : top + TRAIN_PATCH, left : left + TRAIN_PATCH])
    clean_batch = torch.stack(crops)
    noisy = clean_batch + torch.randn(clean_batch.shape, generator=gen) * (SIGMA / 255.0)
    return noisy, clean_batch


def _make_task(model: str, memory_saving: bool):
    """The registry model's training task (`invdn.training.trainer.make_task`), from the shipped weights."""
    from invdn.models.weights import load
    from invdn.training.config import TrainConfig
    from invdn.training.trainer import make_task

    task = make_task(TrainConfig(model=model, memory_saving=memory_saving), None, torch.device("cpu"))
    net = task.modules["main"]
    net.load_state_dict(load(model).state_dict())
    return task


def training_rows(timer: Timer, repeats: int, precisions: tuple[str, ...] = ("fp32", "bf16")) -> list[TrainRow]:
    from invdn.models import registry

    noisy, clean = _training_batch()
    pixels = TRAIN_BATCH * TRAIN_PATCH * TRAIN_PATCH
    plan = [(spec.label, spec.name, "plain", False, precisions) for spec in registry.MODELS]
    plan.insert(2, ("InvDN (paper)", "invdn-paper", "memory-saving", True, ("fp32",)))
    rows = []
    for label, model, mode, memory_saving, variants in plan:
        mode = "l1" if model == "danet-r" else mode
        base = None
        for precision in variants:
            task = _make_task(model, memory_saving)

            def step(task=task, precision: str = precision) -> None:
                torch.manual_seed(0)
                with _autocast(precision):
                    task.step(noisy, clean)

            seconds = timer.best(step, repeats)
            base = seconds if base is None else base
            rows.append(TrainRow(label, mode, precision, seconds, pixels / seconds, base / seconds))
    return rows


def bf16_gradient_agreement() -> dict:
    """Cosine similarity and relative L2 error of bf16-autocast gradients against fp32 ones, one batch."""
    noisy, clean = _training_batch(seed=1)
    from invdn.models import registry

    out = {}
    for name in registry.names():
        task = _make_task(name, memory_saving=False)
        model = task.modules["main"]
        model.train()
        grads = []
        for precision in ("fp32", "bf16"):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(0)
            with _autocast(precision):  # the training step's own losses, as `invdn train [--bf16]` computes them
                if hasattr(task, "losses"):
                    loss = sum(task.losses(noisy, clean))
                else:
                    loss = F.l1_loss(model(noisy).float(), clean)
            loss.backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        fp32, bf16 = grads
        out[name] = {
            "cosine": float(F.cosine_similarity(fp32, bf16, dim=0)),
            "relative_error": float((bf16 - fp32).norm() / fp32.norm()),
        }
    return out


# ---- bf16 accuracy on a dataset ----


def bf16_psnr_cost(dataset: str | Path, limit: int | None, sigma: float = SIGMA) -> dict:
    """Mean PSNR (8-bit outputs) of each network in fp32 and bf16 on AWGN `sigma`, same noisy images and draws."""
    from invdn.eval.metrics import psnr, quantize8
    from invdn.models.weights import load
    from invdn.training.data import FullImageFolder
    from invdn.training.noise import seed_from

    folder = FullImageFolder(dataset, noise=f"awgn:{sigma:g}", limit=limit)
    result: dict = {"dataset": Path(dataset).name, "images": len(folder), "sigma": sigma}
    from invdn.models import registry

    for spec in registry.MODELS:
        name, label = spec.name, spec.label
        model = for_inference(load(name).eval())  # what the engine runs
        scores: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for index in range(len(folder)):
            item = folder[index]
            noisy, clean = item["noisy"][None], item["clean"]
            target = quantize8(clean.permute(1, 2, 0).numpy())
            for precision in scores:
                with torch.inference_mode(), _autocast(precision):
                    if spec.stochastic:
                        gen = torch.Generator().manual_seed(seed_from(0, "bench", item["name"]))
                        out = model.denoise(noisy, generator=gen)
                    else:
                        out = model.denoise(noisy)
                image = out[0].float().clamp(0, 1).permute(1, 2, 0).numpy()
                scores[precision].append(psnr(quantize8(image), target))
        fp32, bf16 = float(np.mean(scores["fp32"])), float(np.mean(scores["bf16"]))
        result[label] = {"fp32_psnr": fp32, "bf16_psnr": bf16, "cost_db": fp32 - bf16}
    return result


# ---- the whole run ----


def run(
    quick: bool = False,
    threads: int | None = None,
    repeats: int | None = None,
    psnr_data: str | Path | None = None,
    psnr_limit: int | None = None,
    progress: Callable[[str], None] | None = None,
    compile_sizes: tuple[float, ...] = (),
) -> SpeedReport:
    from invdn.models import registry
    from invdn.models.weights import load
    from invdn.runtime import bf16_native, configure_threads, tune_allocator

    say = progress or (lambda message: None)
    used = configure_threads(threads=threads)
    tune_allocator()
    timer = Timer(used)
    repeats = repeats if repeats is not None else (1 if quick else 3)
    report = SpeedReport(
        threads=used,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        clock=timer.name,
        reference_gflops_per_s=0.0,
    )
    say("reference convolution")
    report.reference_gflops_per_s = reference_gflops(timer)
    models = {spec.label: load(spec.name).eval() for spec in registry.MODELS}
    precisions: tuple[str, ...] = ("fp32", "bf16")
    if not bf16_native():
        precisions = ("fp32",)
        report.notes.append(
            f"bf16 rows skipped: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16, so oneDNN "
            "emulates it (measured 9.8x slower than fp32 for InvDN)"
        )
    for label, model in models.items():
        if not getattr(model, "pretrained", False):
            report.notes.append(f"{label}: no shipped weights found, random init (speed is unaffected)")
    sizes = [0.25, 1.0] if quick else [0.25, 1.0, 12.0]
    say("inference " + ", ".join(f"{s:g} MP" for s in sizes))
    report.rows = inference_rows(
        models,
        sizes,
        timer,
        report.reference_gflops_per_s,
        repeats,
        straightforward_sizes=sizes,
        ensemble_sizes=[0.25],
        precisions=precisions,
        compile_sizes=compile_sizes,
    )
    report.notes.append("8-way ensemble measured at 0.25 MP only (at 12 MP it would take ~8x the fp32 time)")
    if quick:
        report.notes.append("--quick: no 12 MP rows and no CBM3D")
    else:
        say("CBM3D 1 MP")
        report.rows.append(cbm3d_row(timer))
    say("training steps")
    report.training = training_rows(timer, repeats, precisions)
    say("bf16 gradients")
    report.bf16_gradients = bf16_gradient_agreement()
    if psnr_data is not None:
        say("bf16 PSNR cost")
        report.psnr = bf16_psnr_cost(psnr_data, psnr_limit)
    return report


def summary(report: SpeedReport) -> dict:
    """The acceptance figures of issue 5, computed from the rows."""

    def row(method: str, path: str, precision: str, mp: float) -> SpeedRow | None:
        for r in report.rows:
            if (r.method, r.path, r.precision, r.megapixels) == (method, path, precision, mp):
                return r
        return None

    def slug(label: str) -> str:
        return label.lower().replace("-", "_").replace(" (", "_").replace(")", "").replace(" ", "_")

    out: dict = {}
    labels = list(dict.fromkeys(r.method for r in report.rows if r.method != "CBM3D" and "ensemble" not in r.method))
    for label in labels:
        for mp in sorted({r.megapixels for r in report.rows if r.method == label}):
            fast, bf16, straight = (
                row(label, p, q, mp)
                for p, q in (("optimised", "fp32"), ("optimised", "bf16"), ("straightforward", "fp32"))
            )
            key = f"{slug(label)}_{mp:g}MP"
            if fast is not None:
                out[f"{key}_fp32_fraction_of_reference"] = fast.fraction_of_reference
                if bf16 is not None:
                    out[f"{key}_bf16_speedup_over_fp32"] = fast.seconds / bf16.seconds
                if straight is not None:
                    out[f"{key}_optimised_speedup_over_straightforward"] = straight.seconds / fast.seconds
            for precision, opt in (("fp32", fast), ("bf16", bf16)):
                compiled = row(label, "compiled", precision, mp)
                if opt is not None and compiled is not None:  # < 1: compile is faster in steady state
                    out[f"{key}_{precision}_compiled_time_over_optimised"] = compiled.seconds / opt.seconds
                    out[f"{key}_{precision}_compiled_first_call_s"] = compiled.first_call_seconds
            if label != "DANet-R":  # seconds per MP against DANet-R's in the same run: < 1 is faster
                for precision in ("fp32", "bf16"):
                    mine, ref = row(label, "optimised", precision, mp), row("DANet-R", "optimised", precision, mp)
                    if mine is not None and ref is not None:
                        out[f"{key}_{precision}_time_over_danet_r"] = mine.seconds / ref.seconds
    for t in report.training:
        if t.precision != "fp32":
            out[f"train_{slug(t.model)}_{t.mode}_{t.precision}_speedup".replace("-", "_")] = t.speedup
    for label, value in report.psnr.items():
        if isinstance(value, dict):
            out[f"{slug(label)}_bf16_psnr_cost_db"] = value["cost_db"]
    return out


def format_table(report: SpeedReport) -> str:
    ref = report.reference_gflops_per_s
    lines = [
        f"CPU capability {report.cpu_capability}; "
        f"threads {report.threads}, clock {report.clock}; reference conv 64->64 3x3 channels-last 1x64x256x256 "
        f"fp32: {ref:.0f} GFLOP/s",
        "",
        f"{'method':<25} {'path':<16} {'prec':<5} {'MP':>5} {'size':>9} {'tile':>5} {'s':>8} {'s/MP':>7} "
        f"{'GFLOP/s':>8} {'of ref':>7} {'1st s':>7}",
    ]
    for r in report.rows:
        gflops = f"{r.gflops_per_s:8.0f}" if r.gflops_per_s is not None else f"{'-':>8}"
        frac = f"{r.fraction_of_reference:7.2f}" if r.fraction_of_reference is not None else f"{'-':>7}"
        lines.append(
            f"{r.method:<25} {r.path:<16} {r.precision:<5} {r.megapixels:5.2f} {r.width:>4}x{r.height:<4} "
            f"{r.tile or '-':>5} {r.seconds:8.2f} {r.seconds_per_mp:7.2f} {gflops} {frac} "
            f"{r.first_call_seconds if r.first_call_seconds is not None else float('nan'):7.2f}"
        )
    lines += [
        "",
        f"training step, batch {TRAIN_BATCH} x {TRAIN_PATCH}x{TRAIN_PATCH} (loss, backward, clip, Adam):",
        f"{'model':<14} {'mode':<14} {'prec':<5} {'step s':>7} {'kpx/s':>7} {'speedup':>8}",
    ]
    for t in report.training:
        lines.append(
            f"{t.model:<14} {t.mode:<14} {t.precision:<5} {t.step_seconds:7.3f} "
            f"{t.pixels_per_s / 1e3:7.1f} {t.speedup:8.2f}"
        )
    if report.bf16_gradients:
        lines.append("")
        for name, g in report.bf16_gradients.items():
            lines.append(
                f"bf16 autocast gradients vs fp32, {name}: cosine {g['cosine']:.5f}, "
                f"relative error {g['relative_error']:.4f}"
            )
    if report.psnr:
        p = report.psnr
        lines.append("")
        lines.append(f"bf16 PSNR cost on {p['dataset']} ({p['images']} images) sigma {p['sigma']:g}:")
        for label, v in p.items():
            if not isinstance(v, dict):
                continue
            lines.append(
                f"  {label:<14} fp32 {v['fp32_psnr']:.3f} dB, bf16 {v['bf16_psnr']:.3f} dB, cost {v['cost_db']:+.3f} dB"
            )
    lines.append("")
    lines += [f"{k}: {v:.3f}" for k, v in summary(report).items()]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def as_json(report: SpeedReport) -> str:
    return json.dumps({**asdict(report), "summary": summary(report)}, indent=2)
