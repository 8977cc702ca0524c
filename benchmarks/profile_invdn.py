"""Where InvDN's optimised float32 inference spends its time, per convolution shape, against the reference rate.

Runs `model.denoise` once to warm up, then once more with every fused convolution (`invdn.inference.kernels._fused`) and
every `torch.cat` timed by the thread's CPU clock (one thread, so other processes cannot inflate it). Prints, per
(input shape, weight shape): calls, seconds, GFLOP/s and the fraction of the reference 64->64 3x3 convolution of
`invdn bench speed`; then the shares of convolutions, concatenations and everything else in the whole call.
torch.profiler is not used: its per-operator overhead distorted the small convolutions by up to 3x here.

    python benchmarks/profile_invdn.py               # 1024x1024, shipped weights of the default model
    python benchmarks/profile_invdn.py --model invdn-paper
    python benchmarks/profile_invdn.py --size 512 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import torch

from invdn.bench import speed as bench_speed
from invdn.inference import kernels
from invdn.inference.fast import for_inference
from invdn.models import registry
from invdn.models.weights import load
from invdn.runtime import tune_allocator


def profile(size: int, model_name: str = "invdn") -> dict:
    torch.set_num_threads(1)
    tune_allocator()
    timer = bench_speed.Timer(1)
    reference = bench_speed.reference_gflops(timer)
    model = for_inference(load(model_name).eval())  # the engine's optimised variant, whose convolutions are timed
    x = torch.from_numpy(bench_speed.test_image(size, size).transpose(2, 0, 1).copy())[None]
    convs: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    cats = [0, 0.0]
    fused, cat = kernels._fused, torch.cat

    def timed_conv(x: torch.Tensor, w: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        start = time.thread_time()
        out = fused(x, w, *args, **kwargs)
        seconds = time.thread_time() - start
        entry = convs[(tuple(x.shape), tuple(w.shape))]
        entry[0] += 1
        entry[1] += seconds
        entry[2] += 2 * out.numel() * w[0].numel()  # 2 x outputs x (C_in/groups x kh x kw) multiply-adds
        return out

    def timed_cat(tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
        start = time.thread_time()
        out = cat(tensors, dim)
        cats[0] += 1
        cats[1] += time.thread_time() - start
        return out

    with torch.inference_mode():
        model.denoise(x, generator=torch.Generator().manual_seed(0))
        kernels._fused, torch.cat = timed_conv, timed_cat
        try:
            start = time.thread_time()
            model.denoise(x, generator=torch.Generator().manual_seed(0))
            total = time.thread_time() - start
        finally:
            kernels._fused, torch.cat = fused, cat
    if not convs:
        raise SystemExit("oneDNN's fused convolutions are not available here: nothing to attribute"
                         " (see invdn.inference.kernels)")
    rows = [
        {
            "input": list(shape[0]),
            "weight": list(shape[1]),
            "calls": int(calls),
            "seconds": seconds,
            "gflops_per_s": flops / seconds / 1e9,
            "fraction_of_reference": flops / seconds / 1e9 / reference,
        }
        for shape, (calls, seconds, flops) in sorted(convs.items(), key=lambda kv: -kv[1][1])
    ]
    conv_seconds = sum(r["seconds"] for r in rows)
    return {
        "size": size,
        "reference_gflops_per_s": reference,
        "total_seconds": total,
        "convolutions": rows,
        "share_convolutions": conv_seconds / total,
        "share_cat": cats[1] / total,
        "share_other": (total - conv_seconds - cats[1]) / total,
        "cat_calls": cats[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="Side of the square test image, pixels.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")
    parser.add_argument("--model", default="invdn", choices=registry.choices(), help="Registry model to profile.")
    args = parser.parse_args(argv)
    report = profile(args.size, args.model)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"InvDN fp32, {args.size}x{args.size}, one thread: {report['total_seconds']:.2f} s; reference convolution "
        f"{report['reference_gflops_per_s']:.0f} GFLOP/s"
    )
    print(f"{'input':<20} {'weight':<16} {'calls':>5} {'s':>7} {'GFLOP/s':>8} {'of ref':>7}")
    for r in report["convolutions"]:
        print(
            f"{'x'.join(map(str, r['input'])):<20} {'x'.join(map(str, r['weight'])):<16} {r['calls']:5d} "
            f"{r['seconds']:7.3f} {r['gflops_per_s']:8.0f} {r['fraction_of_reference']:7.2f}"
        )
    print(
        f"shares of the call: convolutions {report['share_convolutions']:.1%}, concatenations "
        f"{report['share_cat']:.1%} ({report['cat_calls']} calls), other {report['share_other']:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
