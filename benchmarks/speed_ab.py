"""`invdn bench speed` of an older revision against this checkout, in one run: seconds and their ratios.

    python benchmarks/speed_ab.py --old REV [--rounds 2] [--repeats 2] [--threads 1] [--compile] [--out FILE]

Checks a change (such as a restructure) for speed: the older revision is checked out into a temporary git worktree,
and both trees run `invdn bench speed --quick --json` in fresh processes with the same thread count (one thread: the
thread's CPU time is the clock), alternating old, new, old, new ... for `--rounds`; each case keeps its best time.
Rows are matched on (method, path, precision, megapixels) for inference and (model, mode, precision) for training,
where older revisions' training "optimised" path is the current single path. A ratio new / old above 1 is slower.
`--compile` adds this checkout's torch.compile rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(tree: Path, threads: int, repeats: int, compiled: bool) -> dict:
    """`invdn bench speed --quick --json` with `tree`'s code and weights, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "INVDN_WEIGHTS_DIR": str(tree / "weights")}
    command = [sys.executable, "-m", "invdn", "bench", "speed", "--quick", "--json", "--threads", str(threads)]
    command += ["--repeats", str(repeats)]
    if compiled:
        command.append("--compile")
    out = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def best_of(runs: list[dict]) -> dict:
    """The first run with every case's seconds replaced by its best over all runs."""
    best = json.loads(json.dumps(runs[0]))
    for run in runs[1:]:
        for mine, other in zip(best["rows"], run["rows"], strict=True):
            mine["seconds"] = min(mine["seconds"], other["seconds"])
        for mine, other in zip(best["training"], run["training"], strict=True):
            mine["step_seconds"] = min(mine["step_seconds"], other["step_seconds"])
    return best


def _inference_key(row: dict) -> tuple:
    return (row["method"], row["path"], row["precision"], row["megapixels"])


def _training_key(row: dict) -> tuple | None:
    if row.get("path", "optimised") != "optimised":
        return None  # older revisions also timed a straightforward training path, which no longer exists
    return (row["model"], row["mode"], row["precision"])


def compare(old: dict, new: dict) -> list[dict]:
    """Rows present in both runs: seconds old and new and new / old."""
    rows = []
    olds = {_inference_key(r): r for r in old["rows"]}
    for r in new["rows"]:
        o = olds.get(_inference_key(r))
        if o is not None:
            rows.append({"kind": "inference", "key": list(_inference_key(r)), "old_s": o["seconds"],
                         "new_s": r["seconds"], "new_over_old": r["seconds"] / o["seconds"]})
    old_train = {k: r for r in old["training"] if (k := _training_key(r)) is not None}
    for r in new["training"]:
        o = old_train.get(_training_key(r))
        if o is not None:
            rows.append({"kind": "training step", "key": list(_training_key(r)), "old_s": o["step_seconds"],
                         "new_s": r["step_seconds"], "new_over_old": r["step_seconds"] / o["step_seconds"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="the older git revision to time against this checkout")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both runs")
    parser.add_argument("--rounds", type=int, default=2, help="old-then-new runs; each case keeps its best")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per case inside each run")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile in this checkout's run")
    parser.add_argument("--out", type=Path, default=None, help="write both reports and the ratios as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.old], cwd=ROOT, check=True,
                       capture_output=True)
        olds, news = [], []
        try:
            for _ in range(args.rounds):
                olds.append(bench(old_tree, args.threads, args.repeats, compiled=False))
                news.append(bench(ROOT, args.threads, args.repeats, args.compile))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    old, new = best_of(olds), best_of(news)
    rows = compare(old, new)
    print(f"CPU capability {new['cpu_capability']}, {new['threads']} thread(s), clock {new['clock']}; "
          f"old = {args.old}, new = this checkout; best of {args.rounds} alternating runs x {args.repeats} repeats")
    print(f"{'kind':<14} {'case':<48} {'old s':>8} {'new s':>8} {'new/old':>8}")
    for r in rows:
        print(f"{r['kind']:<14} {' '.join(map(str, r['key'])):<48} {r['old_s']:8.3f} {r['new_s']:8.3f} "
              f"{r['new_over_old']:8.3f}")
    slower = [r for r in rows if r["new_over_old"] > 1.05]
    print(f"cases more than 5 % slower: {len(slower)} of {len(rows)}")
    if args.out is not None:
        report = {"old_revision": args.old, "rounds": args.rounds, "repeats": args.repeats, "old": old, "new": new,
                  "ratios": rows}
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
