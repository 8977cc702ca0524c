"""Peak memory of one whole-image denoise per input pixel, for every registry model (the registry's
`bytes_per_pixel`, from which `invdn.inference.engine.Denoiser` picks its automatic tile size).

    python benchmarks/memory_per_pixel.py [--size 1024] [--precision fp32] [--json]

Each model runs in a fresh child process: load (random init: memory does not depend on the weights), one warm-up
denoise at 64x64, then the resident-set high-water mark is reset (Linux /proc/self/clear_refs) and one denoise
of a size x size image runs; bytes per pixel = (peak RSS - RSS before) / pixels.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, torch
from invdn.models import registry
torch.set_num_threads(1)
name, size, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
model = registry.get(name).build({}).eval()
ctx = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
with torch.inference_mode(), ctx():
    model.denoise(torch.rand(1, 3, 64, 64))
x = torch.rand(1, 3, size, size)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
before = rss("VmRSS:")
with torch.inference_mode(), ctx():
    y = model.denoise(x)
peak = rss("VmHWM:")
print(json.dumps({"model": name, "size": size, "precision": precision, "bytes_per_pixel": (peak - before) / size**2,
                  "cpu_capability": torch.backends.cpu.get_cpu_capability()}))
"""


def main() -> None:
    from invdn.models import registry

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1024, help="side of the square test image")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="inference precision")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = p.parse_args()
    rows = []
    for spec in registry.MODELS:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, spec.name, str(args.size), args.precision],
            capture_output=True, text=True, check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["registry_bytes_per_pixel"] = spec.bytes_per_pixel
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.size}x{args.size}, {args.precision}, CPU capability {rows[0]['cpu_capability']}")
    print(f"{'model':<14} {'measured B/px':>14} {'registry B/px':>14}")
    for r in rows:
        print(f"{r['model']:<14} {r['bytes_per_pixel']:>14.0f} {r['registry_bytes_per_pixel']:>14}")


if __name__ == "__main__":
    main()
