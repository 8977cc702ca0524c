"""Can a larger test-time ensemble close InvDN-LC's grey gap? Cycle spinning over its 4x4 grid, with and without flips.

InvDN-LC encodes blocks of 4x4 pixels (two Haar steps), so its estimate depends on where that grid falls on the
image: shifting the input by (d, d) pixels for d = 0..3 and shifting each output back gives four estimates to
average (cycle spinning, Coifman and Donoho 1995). The x8 flip/rotation ensemble (`--ensemble`) gives eight; both
together give 32. This measures each average on the noisy images that `invdn eval --clip8` uses (seeded AWGN,
saved to 8 bits, grey folders read as one channel and replicated to three, the output averaged back), whole
images, float32:

    python benchmarks/texture_set.py runs/texture
    python benchmarks/shift_ensemble.py --dataset runs/texture --sigma 25 [--model invdn] [--weights FILE] [--json]

The table gives each variant's mean PSNR, its gain over one pass and its cost in passes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invdn.eval.metrics import psnr, quantize8
from invdn.eval.run import is_grey_folder
from invdn.models.geometry import dihedral_average
from invdn.training.data import FullImageFolder
from invdn.training.noise import clip8

DIAGONAL = tuple((d, d) for d in range(4))  # one shift per phase of the 4x4 grid along the diagonal


def shifted_average(model: nn.Module, x: Tensor, shifts: tuple[tuple[int, int], ...], flips: int) -> Tensor:
    """Mean of model(x) over `flips` dihedral transforms (1 or 8: `geometry.dihedral_average`, the `--ensemble` of
    every model) and the given (dy, dx) shifts, each mapped back.

    A shift pads the top and left by reflection and crops the same rows and columns off the output."""
    if flips not in (1, 8):
        raise ValueError(f"flips is 1 or 8, not {flips}")
    height, width = x.shape[-2:]
    total = torch.zeros_like(x)
    for dy, dx in shifts:
        moved = F.pad(x, (dx, 0, dy, 0), mode="reflect") if dy or dx else x
        total += dihedral_average(moved, flips == 8, model)[..., dy : dy + height, dx : dx + width]
    return total / len(shifts)


VARIANTS: dict[str, tuple[tuple[tuple[int, int], ...], int]] = {
    "one pass": (((0, 0),), 1),
    "4 diagonal shifts": (DIAGONAL, 1),
    "x8 flips": (((0, 0),), 8),
    "x8 flips x 4 shifts": (DIAGONAL, 8),
}


def measure(model: nn.Module, dataset: str, sigma: float, limit: int | None = None, say: Callable = print) -> dict:
    """{"grey": bool, "variants": {variant: {"psnr": mean dB, "passes": n, "images": {name: dB}}}} on `dataset`
    with 8-bit AWGN of `sigma`."""
    grey = is_grey_folder(Path(dataset))  # as `invdn eval --grey auto` decides
    folder = FullImageFolder(dataset, noise=f"awgn:{sigma:g}", grey=grey, limit=limit)
    scores: dict[str, dict[str, float]] = {name: {} for name in VARIANTS}
    for i in range(len(folder)):
        item = folder[i]
        clean = quantize8(item["clean"].permute(1, 2, 0).numpy())
        noisy = clip8(item["noisy"]).unsqueeze(0)  # (1, C, H, W), as the 8-bit file reads
        x = noisy.expand(-1, 3, -1, -1).contiguous() if grey else noisy
        for name, (shifts, flips) in VARIANTS.items():
            with torch.no_grad():
                out = shifted_average(model, x, shifts, flips)
            out = out.mean(1, keepdim=True) if grey else out
            scores[name][item["name"]] = psnr(out[0].permute(1, 2, 0).clamp(0, 1).numpy(), clean)
        say(f"{item['name']}: " + ", ".join(f"{n} {s[item['name']]:.2f}" for n, s in scores.items()))
    passes = {name: len(shifts) * flips for name, (shifts, flips) in VARIANTS.items()}
    variants = {
        name: {"psnr": float(np.mean(list(s.values()))), "passes": passes[name], "images": s}
        for name, s in scores.items()
    }
    return {"grey": grey, "variants": variants}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="folder of clean images (grey folders are evaluated as grey)")
    p.add_argument("--sigma", type=float, default=25.0, help="AWGN sigma on the 0-255 scale")
    p.add_argument("--model", default="invdn", help="registry name of the model")
    p.add_argument("--weights", default=None, help="weights file instead of the shipped one")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import invdn
    from invdn.models.weights import load_file_model

    model = (load_file_model(args.weights) if args.weights else invdn.load(args.model)).eval()
    results = measure(model, args.dataset, args.sigma, args.limit, say=(lambda *_: None) if args.json else print)
    report = {
        "dataset": args.dataset,
        "sigma": args.sigma,
        "model": args.weights or args.model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "grey": results["grey"],
        "variants": results["variants"],
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        base = report["variants"]["one pass"]["psnr"]
        print(f"\n{args.dataset}, sigma {args.sigma:g}, {report['model']}\n")
        print("| variant | passes | PSNR (dB) | gain over one pass |\n|---|---|---|---|")
        for name, r in report["variants"].items():
            print(f"| {name} | {r['passes']} | {r['psnr']:.3f} | {r['psnr'] - base:+.3f} |")
    return report


if __name__ == "__main__":
    main()
