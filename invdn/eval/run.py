"""The evaluation loop: methods x datasets x noise conditions -> per-image scores.

Every method sees the *same* noisy images: AWGN noise is seeded per (dataset folder name, image name, noise
spec) by ``invdn.training.data.FullImageFolder``, and is generated once per image and condition. Outputs are quantised
to 8 bits before scoring (``invdn.eval.metrics.quantize8``), as the literature does. Grey datasets (Set12, BSD68)
get grey AWGN; colour models then run on the replicated channels and their output channels are averaged,
BM3D runs in its grey form. Real-noise pairs (``noisy/`` + ``clean/``) get two CBM3D rows: sigma estimated per
image, and the best single sigma of a sweep, which is tuned on the test set itself and marked so.

The tables, files and plot made from the scores are ``invdn.eval.report``'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from invdn.eval.cache import ScoreCache, score_key
from invdn.eval.config import EvalConfig
from invdn.eval.methods import (
    Condition,
    ImageContext,
    Method,
    bm3d_method,
    bm3d_tag,
    fixed_sigma_bm3d,
    noisy_method,
)
from invdn.eval.metrics import psnr, quantize8, ssim
from invdn.training.data import FullImageFolder, PairedFolder, list_images, read_image
from invdn.training.noise import clip8, make_noise


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
    cached: bool = False  # reused from a `ScoreCache`: `seconds` is from the run that measured it


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

    @property
    def cached(self) -> int:
        """How many of the reported scores were reused from a `ScoreCache` instead of measured in this run."""
        return sum(s.cached for s in self.scores)


def is_grey_folder(root: Path) -> bool:
    """True if the folder's first image is grey (one channel, or RGB with equal channels)."""
    arr = read_image(list_images(root)[0])  # as the datasets read it: one channel comes replicated to three
    return bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0).astype(np.float64)


# PSNR, SSIM, seconds, and whether they came from a ScoreCache
Measured = tuple[float, float, float, bool]


def _score(
    method: Method, noisy: np.ndarray, clean_u8: np.ndarray, ctx: ImageContext, cache: ScoreCache | None = None
) -> Measured:
    """PSNR, SSIM, seconds of `method` on one image and whether they came from `cache` (which holds this method on
    these bytes) instead of being measured now."""
    key = None
    if cache is not None and method.cache_tag is not None:
        key = score_key(method.name, method.cache_tag, ctx.condition.sigma, noisy, clean_u8)
        found = cache.get(key)
        if found is not None:
            return (*found, True)
    start = time.perf_counter()
    out = method.run(noisy, ctx)
    seconds = time.perf_counter() - start
    if out.shape != noisy.shape:
        raise ValueError(f"{method.name} returned shape {out.shape} for input {noisy.shape}")
    out_u8 = quantize8(out)
    scores = psnr(out_u8, clean_u8), ssim(out_u8, clean_u8), seconds
    if key is not None and cache is not None:
        cache.put(key, scores, f"{ctx.dataset} {ctx.condition.label} {ctx.image} {method.name}")
    return (*scores, False)


def _record(results: EvalResults, ctx: ImageContext, method: str, scores: Measured, mp: float) -> None:
    p, s, sec, cached = scores
    results.scores.append(
        ImageScore(ctx.dataset, ctx.condition.label, ctx.condition.sigma, ctx.image, method, p, s, sec, mp, cached)
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
    cache: ScoreCache | None = None,
) -> EvalResults:
    """Evaluate the noisy input, (C)BM3D (if enabled) and the given model rows on every dataset and condition.

    Rows with a `Method.cache_tag` take their scores from `cache` where it has them (`invdn.eval.cache`)."""
    say = progress or (lambda _msg: None)
    results = EvalResults(config=config)
    if config.bm3d:
        import bm3d  # noqa: F401  (import now so it is not timed with the first image)
    warm = ImageContext("warm-up", Condition("warm-up", None, None), "warm-up")
    for m in models:  # first calls allocate and pick kernels; keep that out of the timings
        m.run(np.full((32, 32, 3), 0.5), warm)
    run = _Run(config, models, results, say, cache)
    for path in config.datasets:
        _evaluate_synthetic(run, Path(path))
    for path in config.pairs:
        _evaluate_pairs(run, Path(path))
    return results


@dataclass
class _Run:
    """One evaluation in progress: what was asked, the model rows, and where scores and messages go."""

    config: EvalConfig  # what was asked
    models: Sequence[Method]  # the model rows, after the noisy input and (C)BM3D
    results: EvalResults  # filled as images are scored
    say: Callable[[str], None]  # progress messages
    cache: ScoreCache | None  # reused scores of rows with a cache_tag, if any


def _register(results: EvalResults, method: Method) -> None:
    results.methods.setdefault(method.name, {"kind": method.kind, "params": method.params, "note": method.note})


def _evaluate_synthetic(run: _Run, root: Path) -> None:
    config, results = run.config, run.results
    grey = config.grey == "on" or (config.grey == "auto" and is_grey_folder(root))
    name = _unique_name(root, results.datasets)
    conditions = [Condition(f"σ={s:g}", f"awgn:{s:g}", float(s)) for s in config.sigmas]
    conditions += [Condition(spec, make_noise(spec).spec, None) for spec in config.noises]
    methods = [noisy_method()] + ([bm3d_method(grey_name=grey)] if config.bm3d else []) + list(run.models)
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
                _record(results, ctx, m.name, _score(m, noisy, clean_u8, ctx, run.cache), mp)
            run.say(f"{name} {cond.label}: {i + 1}/{len(folder)} {item['name']}")
    results.datasets[name] = {"path": str(root), "images": count, "grey": grey, "kind": "synthetic"}


def _evaluate_pairs(run: _Run, root: Path) -> None:
    config, results = run.config, run.results
    grey = config.grey == "on"
    name = _unique_name(root, results.datasets)
    cond = Condition("real", None, None)
    est = Method(name="CBM3D (σ estimated per image)", run=bm3d_method().run, kind="bm3d", cache_tag=bm3d_tag())
    methods = [noisy_method()] + ([est] if config.bm3d else []) + list(run.models)
    for m in methods:
        _register(results, m)
    results.conditions[name] = [cond]
    folder = PairedFolder(root, grey=grey, limit=config.limit)
    tag = bm3d_tag()
    tuned = {s: Method(name=f"σ={s:g}", run=fixed_sigma_bm3d(s), kind="bm3d", cache_tag=tag) for s in config.bm3d_sweep}
    sweep: dict[float, list[tuple[Measured, float, str]]] = {s: [] for s in config.bm3d_sweep}
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
            _record(results, ctx, m.name, _score(m, noisy, clean_u8, ctx, run.cache), mp)
        if config.bm3d:
            for s, method in tuned.items():
                sweep[s].append((_score(method, noisy, clean_u8, ctx, run.cache), mp, ctx.image))
        run.say(f"{name} real: {i + 1}/{len(folder)} {item['name']}")
    if config.bm3d and sweep and all(sweep.values()):
        means = {s: float(np.mean([measured[0] for measured, _, _ in rows])) for s, rows in sweep.items()}
        best = max(means, key=lambda s: means[s])
        label = f"CBM3D (σ={best:g}, tuned on test set)"
        sweep_means = {f"{s:g}": round(v, 3) for s, v in means.items()}
        results.methods[label] = {"kind": "bm3d", "params": None, "note": f"best of sweep {sweep_means}"}
        for (p, q, sec, cached), mp, image in sweep[best]:
            results.scores.append(ImageScore(name, cond.label, None, image, label, p, q, sec, mp, cached))
    results.datasets[name] = {"path": str(root), "images": len(folder), "grey": grey, "kind": "pairs"}
