"""Evaluation: methods x datasets x noise conditions -> per-image scores, summaries, tables and a plot.

Every method sees the *same* noisy images: AWGN noise is seeded per (dataset folder name, image name, noise
spec) by ``invdn.training.data.FullImageFolder``, and is generated once per image and condition. Outputs are quantised
to 8 bits before scoring (``invdn.eval.metrics.quantize8``), as the literature does. Grey datasets (Set12, BSD68)
get grey AWGN; colour models then run on the replicated channels and their output channels are averaged,
BM3D runs in its grey form. Real-noise pairs (``noisy/`` + ``clean/``) get two CBM3D rows: sigma estimated per
image, and the best single sigma of a sweep, which is tuned on the test set itself and marked so.

Published numbers (``QUOTED``) are reported in their own table, never mixed with measured rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from invdn.eval.metrics import psnr, quantize8, ssim
from invdn.models import registry
from invdn.models.flops import count_parameters
from invdn.training.data import FullImageFolder, PairedFolder, list_images
from invdn.training.noise import clip8, make_noise, seed_from

__all__ = [
    "QUOTED",
    "Condition",
    "Method",
    "EvalConfig",
    "ImageScore",
    "EvalResults",
    "denoise_fn",
    "model_method",
    "describe_model",
    "noisy_method",
    "bm3d_method",
    "count_parameters",
    "run_evaluation",
    "summarize",
    "markdown_report",
    "write_outputs",
]

# Published PSNR (dB) for AWGN, quoted from the DPIR and FFDNet repositories' tables: dataset -> method -> sigma.
QUOTED: dict[str, dict[str, dict[int, float]]] = {
    "CBSD68": {
        "CBM3D": {15: 33.52, 25: 30.71, 50: 27.38},
        "CDnCNN-B": {15: 33.90, 25: 31.24, 50: 27.95},
        "FFDNet": {15: 33.87, 25: 31.21, 50: 27.96},
        "DRUNet": {15: 34.30, 25: 31.69, 50: 28.51},
    },
    "Kodak24": {
        "CBM3D": {15: 34.28, 25: 32.15, 50: 28.46},
        "FFDNet": {15: 34.63, 25: 32.13, 50: 28.98},
        "DRUNet": {15: 35.31, 25: 32.89, 50: 29.86},
    },
}
QUOTED_SOURCE = "DPIR and FFDNet repositories' tables (full datasets, float noisy inputs)"

@dataclass(frozen=True)
class Condition:
    """One noise condition of a dataset: a table column."""

    label: str  # column header, e.g. "σ=25", "camera", "real"
    spec: str | None  # noise spec for synthetic noise; None for real pairs
    sigma: float | None  # oracle AWGN sigma on the 0-255 scale, or None when unknown


@dataclass(frozen=True)
class ImageContext:
    """What a method may know about the image it denoises (never the clean image)."""

    dataset: str  # dataset name (folder name)
    condition: Condition  # noise condition
    image: str  # image name (relative path without extension)


# A method's denoiser: (noisy float HxWxC image, context) -> output float HxWxC image.
DenoiseCall = Callable[[np.ndarray, ImageContext], np.ndarray]


@dataclass
class Method:
    """A row of the tables: something that turns a noisy image into an estimate of the clean one."""

    name: str  # row label
    run: DenoiseCall  # the denoiser
    kind: str = "model"  # "noisy", "bm3d" or "model"
    params: int | None = None  # learned parameters (plot x-axis); None for non-learned methods
    note: str = ""  # shown beside the row (e.g. "random init: no trained weights")
    real_only: bool = False  # run only on real-noise pairs


@dataclass
class EvalConfig:
    """What to evaluate."""

    datasets: list[Path] = field(default_factory=list)  # clean image folders, evaluated with synthetic noise
    pairs: list[Path] = field(default_factory=list)  # real-noise folders with noisy/ and clean/
    sigmas: list[float] = field(default_factory=lambda: [15.0, 25.0, 50.0])  # AWGN sigmas (0-255)
    noises: list[str] = field(default_factory=list)  # extra synthetic noise specs (e.g. "camera")
    limit: int | None = None  # evaluate only the first N images of each folder
    clip8: bool = False  # save noisy inputs as 8-bit (clip + round) before denoising, as users' files arrive
    bm3d: bool = True  # include (C)BM3D rows
    bm3d_sweep: list[float] = field(default_factory=lambda: [5.0, 10.0, 15.0, 20.0, 25.0, 30.0])  # real pairs
    grey: str = "auto"  # "auto" (grey if the first image is grey), "on" or "off"
    seed: int = 0  # seed of InvDN's latent draws (per image: seed, dataset, condition, image)


@dataclass
class ImageScore:
    """One method on one image."""

    dataset: str  # dataset name
    condition: str  # condition label
    sigma: float | None  # oracle sigma of the condition, if any
    image: str  # image name
    method: str  # method name
    psnr: float  # dB, 8-bit quantised output vs clean
    ssim: float  # scikit-image SSIM
    seconds: float  # wall time of the method on this image
    megapixels: float  # image size


@dataclass
class EvalResults:
    """Everything an evaluation produced."""

    config: EvalConfig  # what was asked
    scores: list[ImageScore] = field(default_factory=list)  # per-image scores
    methods: dict[str, dict] = field(default_factory=dict)  # method name -> {kind, params, note}
    datasets: dict[str, dict] = field(default_factory=dict)  # dataset name -> {path, images, grey, kind}
    conditions: dict[str, list[Condition]] = field(default_factory=dict)  # dataset name -> its conditions
    failures: list[dict[str, str]] = field(default_factory=list)  # {"path", "error"} for skipped images
    models: list[dict] = field(default_factory=list)  # model descriptions (type, params, weights)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def denoise_fn(
    model: nn.Module, noisy: np.ndarray, generator: torch.Generator | None = None, ensemble: bool = False
) -> np.ndarray:
    """Run ``model.denoise`` on one float HxWxC image (C = 3, or 1: replicated in, averaged out)."""
    if noisy.ndim != 3 or noisy.shape[2] not in (1, 3):
        raise ValueError(f"expected an HxWx1 or HxWx3 image, got {noisy.shape}")
    device = _model_device(model)
    x = torch.from_numpy(np.array(noisy.transpose(2, 0, 1), dtype=np.float32)).unsqueeze(0).to(device)
    grey = x.shape[1] == 1
    if grey:
        x = x.expand(-1, 3, -1, -1).contiguous()
    kwargs: dict[str, object] = {}
    if generator is not None:
        kwargs["generator"] = generator
    if ensemble:
        kwargs["ensemble"] = True
    with torch.inference_mode():
        y = model.denoise(x, **kwargs)
    if grey:
        y = y.mean(dim=1, keepdim=True)
    return y[0].float().cpu().numpy().transpose(1, 2, 0)


def _label(model: nn.Module) -> str:
    """The registry's label for a module, else its `model_type`."""
    spec = registry.spec_of(model)
    return spec.label if spec is not None else str(getattr(model, "model_type", "model"))


def describe_model(model: nn.Module, name: str | None = None) -> dict:
    """Model facts for the report: name, type, parameters, whether trained weights are loaded, weights file."""
    model_type = str(getattr(model, "model_type", "model"))
    return {
        "name": name or _label(model),
        "model_type": model_type,
        "params": count_parameters(model),
        "pretrained": bool(getattr(model, "pretrained", False)),
        "weights": getattr(model, "weights_path", None),
    }


def model_method(model: nn.Module, name: str | None = None, ensemble: bool = False, seed: int = 0) -> Method:
    """A table row for a denoiser module (``.denoise``, ``model_type``, ``pretrained``)."""
    label = name or _label(model)
    if ensemble:
        label += " (x8 ensemble)"
    device = _model_device(model)

    def run(noisy: np.ndarray, ctx: ImageContext) -> np.ndarray:
        g = torch.Generator(device=device)
        g.manual_seed(seed_from(seed, "draw", ctx.dataset, ctx.condition.label, ctx.image))
        return denoise_fn(model, noisy, generator=g, ensemble=ensemble)

    note = "" if getattr(model, "pretrained", False) else "random init: no trained weights"
    return Method(name=label, run=run, kind="model", params=count_parameters(model), note=note)


def noisy_method() -> Method:
    """The noisy input itself (the floor every denoiser must beat)."""
    return Method(name="Noisy input", run=lambda noisy, ctx: noisy, kind="noisy")


def _bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (grey) or CBM3D (colour) with noise std ``sigma`` on the [0, 1] scale."""
    import bm3d  # slow to import; only when used

    sigma = max(float(sigma), 1e-4)
    if noisy.shape[2] == 1:
        return np.asarray(bm3d.bm3d(noisy[..., 0], sigma_psd=sigma), dtype=np.float64)[..., None]
    return np.asarray(bm3d.bm3d_rgb(noisy, sigma_psd=sigma), dtype=np.float64)


def estimated_sigma(noisy: np.ndarray) -> float:
    """Noise std on the [0, 1] scale estimated by ``skimage.restoration.estimate_sigma`` (wavelet MAD)."""
    from skimage.restoration import estimate_sigma

    if noisy.shape[2] == 1:
        return float(estimate_sigma(noisy[..., 0], channel_axis=None))
    return float(estimate_sigma(noisy, channel_axis=-1, average_sigmas=True))


def bm3d_method(grey_name: bool = False) -> Method:
    """(C)BM3D with the oracle sigma where the condition has one, else sigma estimated per image."""

    def run(noisy: np.ndarray, ctx: ImageContext) -> np.ndarray:
        sigma = ctx.condition.sigma / 255.0 if ctx.condition.sigma is not None else estimated_sigma(noisy)
        return _bm3d(noisy, sigma)

    return Method(name="BM3D" if grey_name else "CBM3D", run=run, kind="bm3d")


def fixed_sigma_bm3d(sigma: float) -> DenoiseCall:
    """(C)BM3D with one fixed sigma (0-255 scale)."""
    return lambda noisy, ctx: _bm3d(noisy, sigma / 255.0)


def _is_grey_folder(root: Path) -> bool:
    """True if the folder's first image is grey (mode L/I, or RGB with equal channels)."""
    first = list_images(root)[0]
    with Image.open(first) as img:
        if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
            return True
        arr = np.asarray(img.convert("RGB"))
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0).astype(np.float64)


def _score(method: Method, noisy: np.ndarray, clean_u8: np.ndarray, ctx: ImageContext) -> tuple[float, float, float]:
    start = time.perf_counter()
    out = method.run(noisy, ctx)
    seconds = time.perf_counter() - start
    if out.shape != noisy.shape:
        raise ValueError(f"{method.name} returned shape {out.shape} for input {noisy.shape}")
    out_u8 = quantize8(out)
    return psnr(out_u8, clean_u8), ssim(out_u8, clean_u8), seconds


def _record(results: EvalResults, ctx: ImageContext, method: str, scores: tuple[float, float, float], mp: float):
    p, s, sec = scores
    results.scores.append(
        ImageScore(ctx.dataset, ctx.condition.label, ctx.condition.sigma, ctx.image, method, p, s, sec, mp)
    )


def _unique_name(root: Path, taken: dict[str, dict]) -> str:
    name = root.resolve().name
    k = 2
    base = name
    while name in taken:
        name = f"{base}-{k}"
        k += 1
    return name


def run_evaluation(
    config: EvalConfig,
    models: Sequence[Method],
    progress: Callable[[str], None] | None = None,
) -> EvalResults:
    """Evaluate the noisy input, (C)BM3D (if enabled) and the given model rows on every dataset and condition."""
    say = progress or (lambda _msg: None)
    results = EvalResults(config=config)
    if config.bm3d:
        import bm3d  # noqa: F401  (import now so it is not timed with the first image)
    warm = ImageContext("warm-up", Condition("warm-up", None, None), "warm-up")
    for m in models:  # first calls allocate and pick kernels; keep that out of the timings
        m.run(np.full((32, 32, 3), 0.5), warm)
    for path in config.datasets:
        _evaluate_synthetic(Path(path), config, models, results, say)
    for path in config.pairs:
        _evaluate_pairs(Path(path), config, models, results, say)
    return results


def _register(results: EvalResults, method: Method) -> None:
    results.methods.setdefault(method.name, {"kind": method.kind, "params": method.params, "note": method.note})


def _evaluate_synthetic(
    root: Path, config: EvalConfig, models: Sequence[Method], results: EvalResults, say: Callable[[str], None]
) -> None:
    grey = config.grey == "on" or (config.grey == "auto" and _is_grey_folder(root))
    name = _unique_name(root, results.datasets)
    conditions = [Condition(f"σ={s:g}", f"awgn:{s:g}", float(s)) for s in config.sigmas]
    conditions += [Condition(spec, make_noise(spec).spec, None) for spec in config.noises]
    methods = [noisy_method()] + ([bm3d_method(grey_name=grey)] if config.bm3d else []) + list(models)
    for m in methods:
        _register(results, m)
    results.conditions[name] = conditions
    count = 0
    for cond in conditions:
        folder = FullImageFolder(root, noise=cond.spec, grey=grey, limit=config.limit, seed_key=name)
        count = len(folder)
        for i in range(len(folder)):
            try:
                item = folder[i]
            except OSError as exc:
                if cond is conditions[0]:
                    results.failures.append({"path": str(folder.files[i]), "error": str(exc)})
                continue
            clean = _hwc(item["clean"])
            noisy_t = clip8(item["noisy"]) if config.clip8 else item["noisy"]
            noisy = _hwc(noisy_t)
            clean_u8 = quantize8(clean)
            mp = clean.shape[0] * clean.shape[1] / 1e6
            ctx = ImageContext(name, cond, str(item["name"]))
            for m in methods:
                _record(results, ctx, m.name, _score(m, noisy, clean_u8, ctx), mp)
            say(f"{name} {cond.label}: {i + 1}/{len(folder)} {item['name']}")
    results.datasets[name] = {"path": str(root), "images": count, "grey": grey, "kind": "synthetic"}


def _evaluate_pairs(
    root: Path, config: EvalConfig, models: Sequence[Method], results: EvalResults, say: Callable[[str], None]
) -> None:
    grey = config.grey == "on"
    name = _unique_name(root, results.datasets)
    cond = Condition("real", None, None)
    est = Method(name="CBM3D (σ estimated per image)", run=bm3d_method().run, kind="bm3d")
    methods = [noisy_method()] + ([est] if config.bm3d else []) + list(models)
    for m in methods:
        _register(results, m)
    results.conditions[name] = [cond]
    folder = PairedFolder(root, grey=grey, limit=config.limit)
    sweep: dict[float, list[tuple[float, float, float, float, str]]] = {s: [] for s in config.bm3d_sweep}
    for i in range(len(folder)):
        try:
            item = folder[i]
        except (OSError, ValueError) as exc:
            results.failures.append({"path": str(folder.pairs[i][0]), "error": str(exc)})
            continue
        clean = _hwc(item["clean"])
        noisy = _hwc(item["noisy"])
        clean_u8 = quantize8(clean)
        mp = clean.shape[0] * clean.shape[1] / 1e6
        ctx = ImageContext(name, cond, str(item["name"]))
        for m in methods:
            _record(results, ctx, m.name, _score(m, noisy, clean_u8, ctx), mp)
        if config.bm3d:
            for s in config.bm3d_sweep:
                tuned = Method(name=f"σ={s:g}", run=fixed_sigma_bm3d(s), kind="bm3d")
                p, q, sec = _score(tuned, noisy, clean_u8, ctx)
                sweep[s].append((p, q, sec, mp, ctx.image))
        say(f"{name} real: {i + 1}/{len(folder)} {item['name']}")
    if config.bm3d and sweep and all(sweep.values()):
        best = max(sweep, key=lambda s: float(np.mean([r[0] for r in sweep[s]])))
        label = f"CBM3D (σ={best:g}, tuned on test set)"
        sweep_means = {f"{s:g}": round(float(np.mean([r[0] for r in sweep[s]])), 3) for s in sweep}
        results.methods[label] = {"kind": "bm3d", "params": None, "note": f"best of sweep {sweep_means}"}
        for p, q, sec, mp, image in sweep[best]:
            results.scores.append(ImageScore(name, cond.label, None, image, label, p, q, sec, mp))
    results.datasets[name] = {"path": str(root), "images": len(folder), "grey": grey, "kind": "pairs"}


def _finite(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def summarize(results: EvalResults) -> dict:
    """Summary dict (JSON-ready): mean PSNR/SSIM and seconds per megapixel per dataset, condition, method."""
    rows = []
    groups: dict[tuple[str, str, str], list[ImageScore]] = {}
    for s in results.scores:
        groups.setdefault((s.dataset, s.condition, s.method), []).append(s)
    for (dataset, condition, method), items in groups.items():
        info = results.methods.get(method, {})
        mp = sum(i.megapixels for i in items)
        rows.append(
            {
                "dataset": dataset,
                "condition": condition,
                "sigma": items[0].sigma,
                "method": method,
                "kind": info.get("kind"),
                "params": info.get("params"),
                "note": info.get("note", ""),
                "images": len(items),
                "psnr": _finite(float(np.mean([i.psnr for i in items]))),
                "ssim": _finite(float(np.mean([i.ssim for i in items]))),
                "sec_per_mp": _finite(sum(i.seconds for i in items) / mp) if mp else None,
            }
        )
    quoted = [
        {"dataset": d, "method": m, "sigma": s, "psnr": v, "source": QUOTED_SOURCE, "quoted": True}
        for d, methods in QUOTED.items()
        for m, by_sigma in methods.items()
        for s, v in by_sigma.items()
    ]
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in _config_dict(results.config).items()},
        "datasets": results.datasets,
        "models": results.models,
        "rows": rows,
        "quoted": quoted,
        "failures": results.failures,
    }


def _config_dict(config: EvalConfig) -> dict:
    d = asdict(config)
    d["datasets"] = [str(p) for p in config.datasets]
    d["pairs"] = [str(p) for p in config.pairs]
    return d


def _fmt_cell(row: dict) -> str:
    """'PSNR / SSIM' of a summary row (PSNR None means identical images: inf)."""
    p = "inf" if row["psnr"] is None else f"{row['psnr']:.2f}"
    s = "—" if row["ssim"] is None else f"{row['ssim']:.4f}"
    return f"{p} / {s}"


def _quoted_for(dataset: str) -> dict[str, dict[int, float]] | None:
    for key, table in QUOTED.items():
        if key.lower() == dataset.lower():
            return table
    return None


def markdown_report(summary: dict) -> str:
    """Markdown tables: measured rows per dataset, the parameter table, then quoted published rows apart."""
    config = summary["config"]
    out = io.StringIO()
    out.write("# Evaluation\n\n")
    out.write(
        f"Noisy inputs: {'saved as 8-bit (clipped and rounded)' if config['clip8'] else 'float, unclipped'}; "
        "outputs quantised to 8 bits before scoring; PSNR (dB) / SSIM from scikit-image. "
        "Noise is seeded per (dataset, image, noise), identical for every method.\n"
    )
    if config.get("limit"):
        out.write(f"\nOnly the first {config['limit']} images of each dataset (sorted by name).\n")
    rows = summary["rows"]
    for dataset, info in summary["datasets"].items():
        drows = [r for r in rows if r["dataset"] == dataset]
        conditions = list(dict.fromkeys(r["condition"] for r in drows))
        methods = list(dict.fromkeys(r["method"] for r in drows))
        kind = "real noise pairs" if info["kind"] == "pairs" else ("grey" if info["grey"] else "colour")
        out.write(f"\n## {dataset} ({info['images']} images, {kind}) — measured\n\n")
        header = ["Method", "Params"] + [f"{c} PSNR / SSIM" for c in conditions] + ["s/MP", "Note"]
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|" + "|".join(["---"] * len(header)) + "|\n")
        for m in methods:
            mrows = {r["condition"]: r for r in drows if r["method"] == m}
            first = next(iter(mrows.values()))
            cells = [m, f"{first['params'] / 1e6:.2f}M" if first["params"] else "—"]
            for c in conditions:
                r = mrows.get(c)
                cells.append(_fmt_cell(r) if r else "—")
            secs = [r["sec_per_mp"] for r in mrows.values() if r["sec_per_mp"] is not None]
            cells.append(f"{np.mean(secs):.3g}" if secs and first["kind"] != "noisy" else "—")
            cells.append(first["note"])
            out.write("| " + " | ".join(cells) + " |\n")
        quoted = _quoted_for(dataset) if info["kind"] == "synthetic" else None
        sigmas = [r["sigma"] for r in drows if r["sigma"] is not None]
        shown = sorted({int(s) for s in sigmas if any(int(s) in v for v in (quoted or {}).values())})
        if quoted and shown:
            out.write(f"\n### {dataset} — quoted (published, not measured here; source: {QUOTED_SOURCE})\n\n")
            out.write("| Method (quoted) | " + " | ".join(f"σ={s} PSNR" for s in shown) + " |\n")
            out.write("|" + "|".join(["---"] * (len(shown) + 1)) + "|\n")
            for m, by_sigma in quoted.items():
                cells = [f"{by_sigma[s]:.2f}" if s in by_sigma else "—" for s in shown]
                out.write(f"| {m} (quoted) | " + " | ".join(cells) + " |\n")
    if summary["models"]:
        out.write("\n## Models\n\n| Model | Parameters | Weights |\n|---|---|---|\n")
        for m in summary["models"]:
            weights = m.get("weights") or ("random init (no trained weights)" if not m["pretrained"] else "shipped")
            out.write(f"| {m['name']} | {m['params']:,} | {weights} |\n")
    if summary["failures"]:
        out.write(f"\n**{len(summary['failures'])} image(s) skipped:**\n\n")
        for f in summary["failures"]:
            out.write(f"- {f['path']}: {f['error']}\n")
    return out.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _csv_bytes(scores: list[ImageScore]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["dataset", "condition", "sigma", "image", "method", "psnr", "ssim", "seconds", "megapixels"])
    for s in scores:
        writer.writerow(
            [
                s.dataset,
                s.condition,
                "" if s.sigma is None else f"{s.sigma:g}",
                s.image,
                s.method,
                f"{s.psnr:.4f}",
                f"{s.ssim:.5f}",
                f"{s.seconds:.4f}",
                f"{s.megapixels:.5f}",
            ]
        )
    return buf.getvalue().encode()


def plot_psnr_vs_params(summary: dict) -> bytes | None:
    """PNG bytes: PSNR against parameter count for the learned models (CBM3D as dashed lines); None if empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if r["psnr"] is not None]
    series = list(dict.fromkeys((r["dataset"], r["condition"]) for r in rows))
    if not any(r["params"] for r in rows):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (dataset, condition) in enumerate(series):
        colour = colours[k % len(colours)]
        srows = [r for r in rows if r["dataset"] == dataset and r["condition"] == condition]
        learned = [r for r in srows if r["params"]]
        ax.plot(
            [r["params"] for r in learned],
            [r["psnr"] for r in learned],
            "o",
            color=colour,
            label=f"{dataset} {condition}",
        )
        for r in learned:
            ax.annotate(r["method"], (r["params"], r["psnr"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
        for r in srows:
            if r["kind"] == "bm3d" and "tuned" not in r["method"]:
                ax.axhline(r["psnr"], color=colour, linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR vs parameters (dashed: CBM3D, same noisy images)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(results: EvalResults, out_dir: str | Path) -> dict[str, Path]:
    """Write per_image.csv, summary.json, results.md and psnr_vs_params.png (atomically) into ``out_dir``."""
    out_dir = Path(out_dir)
    summary = summarize(results)
    written = {
        "csv": out_dir / "per_image.csv",
        "json": out_dir / "summary.json",
        "markdown": out_dir / "results.md",
    }
    _atomic_write(written["csv"], _csv_bytes(results.scores))
    _atomic_write(written["json"], (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    _atomic_write(written["markdown"], markdown_report(summary).encode())
    png = plot_psnr_vs_params(summary)
    if png is not None:
        written["plot"] = out_dir / "psnr_vs_params.png"
        _atomic_write(written["plot"], png)
    return written
