"""Where an InvDN's error comes from: its low-resolution (LR) image, its decoder, or its latent draw.

InvDN denoises by encoding the noisy image into an LR image (3 channels at 1/4 size) plus a latent z, replacing z by
a fresh N(0, I) draw and decoding. Per image, with seeded AWGN at `--sigma` (the noisy image clipped to [0, 1]) or
on real `--pairs`:

- `lr_vs_target`: PSNR of the encoder's LR image against the forward-loss target (antialiased bicubic 1/4 of the
  clean image, `invdn.training.losses.downscale`), both as float (the other columns are rounded to 8 bits).
- `output_z1`, `output_z0`, `output_mean4`: PSNR of the output with z ~ N(0, I) (what `denoise` does), with z = 0,
  and averaged over 4 draws. If all three agree, the decoder ignores z.
- `decode_target_lr`: the decoder fed the *ideal* LR image (the target above) with z = 0: what a perfect encoder
  that hides nothing in its LR image would give.
- `bicubic_up_target_lr`: the target LR image upscaled x4 with bicubic interpolation, no network at all.

When `output_*` sits near `decode_target_lr` and both near `bicubic_up_target_lr`, the network works as a x4
super-resolver of a plain LR image: detail beyond that must be carried inside the LR image (as invertible rescaling
networks learn to do), which is what more training has to teach it.

    python benchmarks/invdn_diagnostics.py --dataset ../shared/datasets/CBSD68 --limit 10 --sigma 25
    python benchmarks/invdn_diagnostics.py --pairs ../shared/datasets/CC15 --limit 15 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from invdn.eval.metrics import psnr
from invdn.models.weights import load, load_file_model
from invdn.training.data import list_images, read_image
from invdn.training.losses import downscale

COLUMNS = ("lr_vs_target", "output_z1", "output_z0", "output_mean4", "decode_target_lr", "bicubic_up_target_lr")


def _rgb(path: Path) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; grey images replicated to three channels."""
    return read_image(path).astype(np.float32) / 255.0


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) -> (H, W, 3), clipped and rounded to 8 bits as saved files are."""
    return np.round(t.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255.0) / 255.0


@torch.no_grad()
def diagnose(model: torch.nn.Module, noisy: np.ndarray, clean: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The COLUMNS for one image (both (H, W, 3) float32 in [0, 1]), cropped to a multiple of the model's padding."""
    m = model.multiple
    height, width = clean.shape[0] // m * m, clean.shape[1] // m * m
    noisy, clean = noisy[:height, :width], clean[:height, :width]
    x = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
    y = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1)))[None]
    target = downscale(y, m)  # (1, 3, H/4, W/4)
    generator = torch.Generator().manual_seed(seed)
    lr, _, size = model.encode(x)
    draws = [model.decode(lr, model.sample_latent(lr, generator), size) for _ in range(4)]
    zero = torch.zeros(1, model.latent_channels, *lr.shape[-2:])
    upscaled = F.interpolate(target, scale_factor=m, mode="bicubic", align_corners=False)
    lr_error = float(((lr - target) ** 2).mean())
    return {
        "lr_vs_target": 10 * float(np.log10(1.0 / max(lr_error, 1e-12))),
        "output_z1": psnr(_to_numpy(draws[0]), clean),
        "output_z0": psnr(_to_numpy(model.decode(lr, zero, size)), clean),
        "output_mean4": psnr(_to_numpy(sum(draws) / 4), clean),
        "decode_target_lr": psnr(_to_numpy(model.decode(target, zero, size)), clean),
        "bicubic_up_target_lr": psnr(_to_numpy(upscaled), clean),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", type=Path, help="Folder of clean images (seeded AWGN is added).")
    source.add_argument("--pairs", type=Path, help="Real-noise folder with noisy/ and clean/ of matching names.")
    parser.add_argument("--sigma", type=float, default=25.0, help="AWGN sigma on the 0-255 scale (--dataset).")
    parser.add_argument("--limit", type=int, default=10, help="Use only the first N images.")
    parser.add_argument("--weights", type=Path, default=None, help="InvDN weights (default: the shipped ones).")
    parser.add_argument("--threads", type=int, default=0, help="Torch threads (0: torch's default).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = (load_file_model(args.weights) if args.weights else load("invdn-paper")).eval()
    if getattr(model, "model_type", "") != "invdn":
        parser.error("these diagnostics are for the paper InvDN (invdn-paper) weights")
    rows = []
    if args.dataset:
        files = list_images(args.dataset)[: args.limit]
        for index, path in enumerate(files):
            clean = _rgb(path)
            rng = np.random.default_rng([index, int(args.sigma * 100)])
            noise = rng.standard_normal(clean.shape).astype(np.float32) * np.float32(args.sigma / 255)
            noisy = np.clip(clean + noise, 0.0, 1.0)
            rows.append({"image": path.name, **diagnose(model, noisy, clean)})
    else:
        for path in list_images(args.pairs / "noisy")[: args.limit]:
            noisy, clean = _rgb(path), _rgb(args.pairs / "clean" / path.name)
            rows.append({"image": path.name, "noisy_input": psnr(noisy, clean), **diagnose(model, noisy, clean)})
    if not rows:
        parser.error("no images found")
    columns = (["noisy_input"] if args.pairs else []) + list(COLUMNS)
    mean = {c: float(np.mean([r[c] for r in rows])) for c in columns}
    label = f"{args.dataset} sigma {args.sigma:g}" if args.dataset else f"{args.pairs} (real pairs)"
    if args.json:
        print(json.dumps({"source": label, "images": len(rows), "mean_psnr_db": mean, "rows": rows}, indent=2))
        return 0
    print(f"InvDN diagnostics, {label}, {len(rows)} images: mean PSNR (dB)")
    for c in columns:
        print(f"  {c:<22} {mean[c]:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
