"""What a real pair's difference (noisy - clean) holds that the training camera noise does not.

For every pair of a real-noise set (``--pairs``: noisy/ and clean/), the difference noisy - clean is measured and
set beside a synthetic twin: the clean image through the training mix's camera component (``--twin``, shot level
found per image so that the twin's noise has the real pair's standard deviation; read noise from the component's
log-linear law), saved to 8 bits. Measured on both:

- ``sd``: standard deviation of the difference, 0-255 scale;
- ``lag1`` / ``lag2``: correlation of the luminance difference with itself 1 and 2 pixels away (mean of both axes);
- ``chan``: mean correlation between the three channels' differences;
- ``edge``: variance of the difference on the 10 % of pixels with the strongest clean gradients, over its variance
  on the flattest half; noise that does not depend on the picture gives about 1;
- ``edge_fit``: ``edge`` again after taking out the least-squares 5x5 filter (per channel, plus offset) from the
  clean image to the noisy one: what a shifted or blurred copy of the reference explains is gone from it;
- ``centre`` / ``arm``: least-squares 3x3 filter that maps the clean image to the noisy one (noise independent of
  the picture leaves it at 1 / 0); an ``arm`` above 0 means the noisy photo's detail is softer than the reference's.

``--save-diff DIR`` writes each pair's luminance difference, amplified 6x around mid-grey, as DIR/NAME.png, to look
at (picture-dependent differences draw the picture's edges; noise does not).

With ``--model`` (a registry name; ``--weights`` for another file) it also denoises both through
`invdn.inference.engine.Denoiser` and reports the PSNR gain over the noisy input, and what a 0.6-pixel Gaussian blur
of the output adds: a model whose output gains from more smoothing leaves something the reference does not have.

    python benchmarks/real_pairs.py --pairs ../shared/datasets/CC15 --model invdn
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter, sobel

from invdn.eval.metrics import psnr, quantize8
from invdn.inference.engine import Denoiser
from invdn.io.atomic import write_atomic
from invdn.models import registry
from invdn.models.weights import load
from invdn.training.data import PairedFolder
from invdn.training.noise import READ_LAW, USERS_FILES_NOISE, CameraNoise, MixNoise, make_noise


def _training_camera() -> str:
    """The spec of the camera component of the training mix (USERS_FILES_NOISE)."""
    mix = make_noise(USERS_FILES_NOISE)
    assert isinstance(mix, MixNoise)
    return next(c.spec for c in mix.components if isinstance(c, CameraNoise))


TWIN = _training_camera()
STATS = ("sd", "lag1", "lag2", "chan", "edge", "edge_fit", "centre", "arm")
FIT = 2  # edge_fit: the linear filter taken out is (2 FIT + 1) x (2 FIT + 1)


def _lag(lum: np.ndarray, k: int) -> float:
    lum = lum - lum.mean()
    var = float((lum * lum).mean())
    across = float((lum[:, :-k] * lum[:, k:]).mean())
    down = float((lum[:-k] * lum[k:]).mean())
    return 0.5 * (across + down) / var


def _sd(diff: np.ndarray) -> float:
    """Standard deviation of an (H, W, C) difference about each channel's own mean."""
    return float((diff - diff.mean(axis=(0, 1))).std())


def _edge_ratio(gradient: np.ndarray, diff: np.ndarray) -> float:
    power = (diff**2).mean(axis=2)
    strong = power[gradient >= np.quantile(gradient, 0.9)].mean()
    return float(strong / power[gradient <= np.quantile(gradient, 0.5)].mean())


def _neighbourhood_fit(clean: np.ndarray, noisy: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (2 r + 1)^2 filter plus offset from ``clean`` to ``noisy`` (same shape; every trailing axis is
    pooled) on the interior: the filter weights (2 r + 1, 2 r + 1) and the residual, borders of ``r`` dropped."""
    h, w = clean.shape[:2]
    cols = [
        clean[r + dy : h - r + dy, r + dx : w - r + dx].reshape(-1)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
    ]
    design = np.stack([*cols, np.ones_like(cols[0])], axis=1)
    target = noisy[r : h - r, r : w - r]
    solution = np.linalg.lstsq(design, target.reshape(-1), rcond=None)[0]
    residual = (target.reshape(-1) - design @ solution).reshape(target.shape)
    return solution[:-1].reshape(2 * r + 1, 2 * r + 1), residual


def filter_residual(clean: np.ndarray, noisy: np.ndarray, radius: int) -> np.ndarray:
    """noisy minus its least-squares prediction from a (2 radius + 1)^2 neighbourhood of clean (per channel, plus
    offset), on the interior (borders of ``radius`` dropped)."""
    planes = [_neighbourhood_fit(clean[..., c], noisy[..., c], radius)[1] for c in range(clean.shape[2])]
    return np.stack(planes, axis=-1)


def softness(clean: np.ndarray, noisy: np.ndarray) -> tuple[float, float]:
    """Centre and mean edge-neighbour weight of the least-squares 3x3 filter (plus offset) from clean to noisy,
    pooled over channels; (H, W, C) arrays on one scale."""
    weights = _neighbourhood_fit(clean, noisy, 1)[0]
    return float(weights[1, 1]), float((weights[0, 1] + weights[2, 1] + weights[1, 0] + weights[1, 2]) / 4)


def difference_stats(clean: np.ndarray, noisy: np.ndarray) -> dict[str, float]:
    """The statistics of the module docstring for one (H, W, 3) pair on the 0-255 scale."""
    clean = clean.astype(np.float64)
    noisy = noisy.astype(np.float64)
    diff = noisy - clean
    sd = _sd(diff)
    diff = diff - diff.mean(axis=(0, 1))
    lum = diff.mean(axis=2)
    corr = np.corrcoef(diff.reshape(-1, 3).T)
    grey = clean.mean(axis=2)
    gradient = gaussian_filter(np.hypot(sobel(grey, 0), sobel(grey, 1)), 1.0)
    centre, arm = softness(clean, noisy)
    return {
        "sd": sd,
        "lag1": _lag(lum, 1),
        "lag2": _lag(lum, 2),
        "chan": float((corr[0, 1] + corr[0, 2] + corr[1, 2]) / 3),
        "edge": _edge_ratio(gradient, diff),
        "edge_fit": _edge_ratio(gradient[FIT:-FIT, FIT:-FIT], filter_residual(clean, noisy, FIT)),
        "centre": centre,
        "arm": arm,
    }


def matched_twin(clean: np.ndarray, sd: float, twin: CameraNoise, seed: int) -> np.ndarray:
    """The clean (H, W, 3) float image through ``twin`` (its shot and read levels replaced, finished to 8 bits) with
    the shot level whose output differs from the clean image by standard deviation ``sd`` (0-255 scale, about each
    channel's mean, as `difference_stats` measures it), by bisection; read noise from the camera model's law
    (``READ_LAW``, without its per-image jitter). Warns when the level cannot be reached within 5 %."""
    tensor = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1)))[None].float()

    def draw(log_shot: float) -> np.ndarray:
        shot = math.exp(log_shot)
        read = math.exp(READ_LAW[0] * log_shot + READ_LAW[1])
        model = dataclasses.replace(twin, shot=(shot, shot), read=(read, read), finish="clip8")
        return model(tensor, torch.Generator().manual_seed(seed))[0].numpy().transpose(1, 2, 0)

    lo, hi = math.log(1e-5), math.log(5e-2)
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        if _sd(draw(mid) - clean) * 255.0 < sd:
            lo = mid
        else:
            hi = mid
    out = draw(0.5 * (lo + hi))
    reached = _sd(out - clean) * 255.0
    if abs(reached - sd) > 0.05 * sd:
        print(f"warning: twin noise sd {reached:.2f} where {sd:.2f} was asked (out of the shot range)", file=sys.stderr)
    return out


def save_diff(path: Path, clean: np.ndarray, noisy: np.ndarray) -> None:
    """The luminance difference noisy - clean of (H, W, 3) [0, 1] images, 6x around mid-grey, as an 8-bit PNG."""
    diff = (noisy - clean).mean(axis=2) * 255.0
    buffer = io.BytesIO()
    Image.fromarray(np.clip(128 + 6 * diff, 0, 255).round().astype(np.uint8)).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue(), overwrite=True)


def gains(denoiser: Denoiser, noisy: np.ndarray, clean_u8: np.ndarray) -> tuple[float, float]:
    """PSNR gain of one pass over the noisy input, and the further gain of blurring that output by 0.6 pixels."""
    out = denoiser(noisy.astype(np.float32), seed=0)
    once = psnr(quantize8(out), clean_u8)
    blurred = psnr(quantize8(gaussian_filter(out, (0.6, 0.6, 0))), clean_u8)
    return once - psnr(quantize8(noisy), clean_u8), blurred - once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True, help="real-noise folder with noisy/ and clean/")
    parser.add_argument("--twin", default=TWIN, help="camera noise spec of the twin (its shot/read are matched)")
    parser.add_argument("--model", default=None, choices=registry.choices(), help="also denoise real and twin")
    parser.add_argument("--weights", default=None, help="weights file instead of the shipped one")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    parser.add_argument("--save-diff", type=Path, default=None, help="write amplified difference images here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown tables")
    args = parser.parse_args(argv)
    twin = make_noise(args.twin)
    if not isinstance(twin, CameraNoise):
        parser.error("--twin must be a camera noise spec")
    if twin.shot is not None or twin.read is not None:
        parser.error("--twin takes no shot= or read=: the shot level is matched per pair, read noise follows it")
    torch.set_num_threads(args.threads)
    denoiser = Denoiser(load(args.model, args.weights), device="cpu") if args.model else None
    folder = PairedFolder(args.pairs, limit=args.limit)
    per_image = []
    for i in range(len(folder)):
        item = folder[i]
        clean = item["clean"].numpy().transpose(1, 2, 0)
        noisy = item["noisy"].numpy().transpose(1, 2, 0)
        real = difference_stats(clean * 255.0, noisy * 255.0)
        if args.save_diff is not None:
            save_diff(args.save_diff / f"{item['name']}.png", clean, noisy)
        synthetic = matched_twin(clean, real["sd"], twin, seed=i)
        row = {"name": str(item["name"]), "real": real, "twin": difference_stats(clean * 255.0, synthetic * 255.0)}
        if denoiser is not None:
            clean_u8 = quantize8(clean)
            row["real"]["gain"], row["real"]["blur_gain"] = gains(denoiser, noisy, clean_u8)
            row["twin"]["gain"], row["twin"]["blur_gain"] = gains(denoiser, synthetic, clean_u8)
        per_image.append(row)
    keys = STATS + (("gain", "blur_gain") if denoiser is not None else ())
    summary = {
        kind: {k: round(float(np.mean([r[kind][k] for r in per_image])), 3) for k in keys} for kind in ("real", "twin")
    }
    twin_used = f"{twin.spec} (shot matched per pair, read from the camera model's law, finished clip8)"
    meta = {"pairs": str(args.pairs), "images": len(per_image), "twin": twin_used, "model": args.model}
    meta["weights"] = (args.weights or "shipped") if args.model else None
    if args.json:
        print(json.dumps({**meta, "mean": summary, "per_image": per_image}, indent=2))
        return 0
    model_note = f"; model {args.model} ({meta['weights']} weights)" if args.model else ""
    print(f"{args.pairs}, {len(per_image)} pairs; twin {twin_used}{model_note}\n")
    print("| mean over pairs | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for kind in ("real", "twin"):
        print(f"| {kind} | " + " | ".join(f"{summary[kind][k]:.2f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
