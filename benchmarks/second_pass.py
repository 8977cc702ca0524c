"""Does a model leave noise it could remove? PSNR of one pass against a second pass over its own 8-bit output.

A denoiser trained on the noise in front of it removes what it can in one pass: a second pass over the output then
costs PSNR (it takes the remaining detail for noise). If a second pass *gains*, the first left noise the model
knows how to remove once weaker, i.e. the input's noise differs from the training noise (e.g. real photos' noise,
correlated across pixels by the camera's processing, against synthetic noise). Real pairs (``--pairs``: noisy/ and
clean/) are used as they are; clean folders (``--dataset``) get seeded ``--noise`` and are saved to 8 bits, as
users' files arrive. Both passes run through `invdn.inference.engine.Denoiser` with the model's automatic tiles.

    python benchmarks/second_pass.py --pairs ../shared/datasets/CC15
    python benchmarks/second_pass.py --dataset ../shared/datasets/CBSD68 --limit 8 \
        --noise camera:chroma=0-3:jpeg=0.5:jpeg_q=60-95:clip8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from invdn.eval.metrics import psnr, quantize8
from invdn.inference.engine import Denoiser
from invdn.models import registry
from invdn.models.weights import load
from invdn.training.data import FullImageFolder, PairedFolder
from invdn.training.noise import clip8


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0).astype(np.float32)


def passes(denoiser: Denoiser, noisy: np.ndarray, clean_u8: np.ndarray) -> tuple[float, float, float]:
    """PSNR of the 8-bit noisy input, of one pass and of a second pass over the first's 8-bit output."""
    once = quantize8(denoiser(noisy, seed=0))
    twice = quantize8(denoiser(once.astype(np.float32) / 255.0, seed=0))
    return psnr(quantize8(noisy), clean_u8), psnr(once, clean_u8), psnr(twice, clean_u8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, help="real-noise folder with noisy/ and clean/")
    parser.add_argument("--dataset", type=Path, help="clean image folder, noised with --noise")
    parser.add_argument("--noise", default="awgn:25:clip8", help="noise spec for --dataset (invdn.training.noise)")
    parser.add_argument("--model", default=registry.DEFAULT, choices=registry.choices())
    parser.add_argument("--weights", default=None, help="weights file instead of the shipped one")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args(argv)
    if (args.pairs is None) == (args.dataset is None):
        parser.error("give one of --pairs or --dataset")
    torch.set_num_threads(args.threads)
    denoiser = Denoiser(load(args.model, args.weights), device="cpu")
    if args.pairs is not None:
        folder, source = PairedFolder(args.pairs, limit=args.limit), str(args.pairs)
    else:
        folder = FullImageFolder(args.dataset, noise=args.noise, limit=args.limit, seed_key="second-pass")
        source = f"{args.dataset} with {args.noise}"
    rows = []
    for i in range(len(folder)):
        item = folder[i]
        noisy = _hwc(clip8(item["noisy"]))  # 8-bit files (real pairs already are)
        rows.append((str(item["name"]), *passes(denoiser, noisy, quantize8(_hwc(item["clean"])))))
    mean = np.mean([r[1:] for r in rows], axis=0)
    summary = {
        "source": source,
        "model": args.model,
        "weights": args.weights or "shipped",
        "images": len(rows),
        "psnr_noisy": round(float(mean[0]), 3),
        "psnr_once": round(float(mean[1]), 3),
        "psnr_twice": round(float(mean[2]), 3),
        "images_gaining_from_twice": sum(r[3] > r[2] for r in rows),
    }
    if args.json:
        print(json.dumps({**summary, "per_image": rows}, indent=2))
        return 0
    print(f"{source}, {args.model} ({summary['weights']} weights), {len(rows)} images\n")
    print("| | noisy | one pass | two passes | images where two passes gain |")
    print("|---|---|---|---|---|")
    print(
        f"| mean PSNR (dB) | {mean[0]:.2f} | {mean[1]:.2f} | {mean[2]:.2f} | "
        f"{summary['images_gaining_from_twice']} of {len(rows)} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
