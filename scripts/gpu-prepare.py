"""Fill the git-ignored .gpu/data/ with as much training data as a call of the device tool can carry.

A call sends the working tree (tracked files and untracked files that git does not ignore) plus the carried paths,
64 MiB in all. This script measures what the tree takes, then copies Train400 (grey) whole and as many CBSD432 images
as the rest allows, evenly spaced over the sorted list so the subset spans the whole set, into .gpu/data/{CBSD432,
Train400}/ (the layout scripts/gpu-session.sh reads). Everything else under .gpu/ (the whole folder is carried, e.g.
a weights file for gpu-session.sh's INIT_INVDN) is counted first. It prints what it took and writes
.gpu/data/SUBSET.txt. The subset depends on the tree's size: do not rerun it between calls that resume a run.

    python scripts/gpu-prepare.py [--datasets ../shared/datasets] [--limit-mib 64] [--margin-mib 1.5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def travelling_bytes(root: Path) -> int:
    """Bytes of the files a device call sends besides the carried paths: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    return sum((root / name.decode()).stat().st_size for name in listed if name and (root / name.decode()).is_file())


def other_carried_bytes(carried: Path, out: Path) -> int:
    """Bytes of the files under the carried folder `carried` that are not under `out` (which this script replaces)."""
    if not carried.is_dir():
        return 0
    out = out.resolve()
    return sum(f.stat().st_size for f in carried.rglob("*") if f.is_file() and out not in f.resolve().parents)


def evenly_spaced(files: list[Path], budget: int) -> list[Path]:
    """The largest evenly spaced subset of `files` (sorted) whose sizes fit in `budget` bytes."""
    for count in range(len(files), 0, -1):
        picked = [files[(i * len(files)) // count] for i in range(count)]
        if sum(p.stat().st_size for p in picked) <= budget:
            return picked
    return []


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets", help="folder of datasets")
    p.add_argument("--out", type=Path, default=ROOT / ".gpu" / "data", help="where the carried data goes")
    p.add_argument("--carried", type=Path, default=ROOT / ".gpu", help="the carried folder that holds --out")
    p.add_argument("--limit-mib", type=float, default=64.0, help="what one device call may send, MiB")
    p.add_argument("--margin-mib", type=float, default=1.5, help="left free for files written before the call")
    args = p.parse_args(argv)
    tree = travelling_bytes(ROOT) + other_carried_bytes(args.carried, args.out)
    budget = int((args.limit_mib - args.margin_mib) * MiB) - tree
    grey = sorted((args.datasets / "Train400").iterdir())
    colour = sorted((args.datasets / "CBSD432").iterdir())
    grey_bytes = sum(f.stat().st_size for f in grey)
    if grey_bytes > budget:
        raise SystemExit(
            f"the working tree and the rest of {args.carried} take {tree / MiB:.1f} MiB: "
            f"no room for Train400 ({grey_bytes / MiB:.1f} MiB)"
        )
    picked = evenly_spaced(colour, budget - grey_bytes)
    shutil.rmtree(args.out, ignore_errors=True)
    for name, files in (("Train400", grey), ("CBSD432", picked)):
        (args.out / name).mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, args.out / name / f.name)
    carried = grey_bytes + sum(f.stat().st_size for f in picked)
    summary = (
        f"working tree and other carried files {tree / MiB:.1f} MiB + data {carried / MiB:.1f} MiB "
        f"(limit {args.limit_mib:g}): "
        f"Train400 {len(grey)}/{len(grey)}, CBSD432 {len(picked)}/{len(colour)} (evenly spaced)"
    )
    (args.out / "SUBSET.txt").write_text(summary + "\n" + "\n".join(f.name for f in picked) + "\n")
    print(summary)
    return {"tree": tree, "data": carried, "colour": len(picked), "grey": len(grey)}


if __name__ == "__main__":
    main()
