"""The quality floors of the weights issue, checked on the eval suite's output, and RESULTS.md's quality section.

    python benchmarks/floors.py benchmarks/eval/suite [--results benchmarks/RESULTS.md] [--json]

Reads OUT/{cbsd68,set12,bsd68,cc15}/summary.json and per_image.csv as `benchmarks/eval_suite.sh` writes them (all
images, 8-bit noisy inputs, every registry model beside (C)BM3D and FFDNet in one run per set) and prints, for each
model row (the registry models and the default model's x8 ensemble), every floor with the measured margin:
- CBSD68 at sigma 25 and 50: above CBM3D and at least FFDNet (both with the oracle sigma);
- Set12 and BSD68 as one-channel files at sigma 25 and 50: at least BM3D;
- CC15 real pairs: at least the noisy input + 3 dB on average, and no image below its noisy input.
With --results, the section between the `eval-suite` markers of that file is replaced by the per-set tables and the
floors table (nothing else in the file changes).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from invdn.io.atomic import write_atomic

START, END = "<!-- eval-suite:start -->", "<!-- eval-suite:end -->"
PARTS = ("cbsd68", "set12", "bsd68", "cc15")


def _summaries(out: Path) -> dict[str, dict]:
    """Each finished part's summary.json, read once."""
    paths = {part: out / part / "summary.json" for part in PARTS}
    return {part: json.loads(path.read_text()) for part, path in paths.items() if path.exists()}


def _psnr(rows: list[dict], method: str, sigma: float | None) -> float | None:
    for row in rows:
        if row["method"] == method and (sigma is None or row.get("sigma") == sigma):
            return float(row["psnr"])
    return None


def _model_entries(out: Path) -> dict[str, dict]:
    """Every model of the run by label (its entry in the first summary that lists it)."""
    entries: dict[str, dict] = {}
    for summary in _summaries(out).values():
        for m in summary["models"]:
            entries.setdefault(m["name"], m)
    return entries


def _model_rows(out: Path) -> list[str]:
    """Every model row of the run (the models, and the default model's x8 ensemble row), in table order."""
    names: dict[str, None] = {}
    for summary in _summaries(out).values():
        for row in summary["rows"]:
            if row.get("kind") == "model":
                names.setdefault(row["method"], None)
    return list(names)


def _real_gains(out: Path, method: str) -> list[float]:
    """Per-image PSNR gain of `method` over the noisy input on the real pairs."""
    path = out / "cc15" / "per_image.csv"
    if not path.exists():
        return []
    by_image: dict[str, dict[str, float]] = defaultdict(dict)
    with path.open() as f:
        for row in csv.DictReader(f):
            by_image[row["image"]][row["method"]] = float(row["psnr"])
    return [v[method] - v["Noisy input"] for v in by_image.values() if method in v and "Noisy input" in v]


def floors(out: Path) -> list[dict]:
    """One record per (model, floor): the measured value, the bar, the margin and whether it holds."""
    summaries, records = _summaries(out), []

    def rows(part: str) -> list[dict]:
        return summaries.get(part, {}).get("rows", [])

    for model in _model_rows(out):
        checks: list[tuple[str, float | None, float | None]] = []
        colour = rows("cbsd68")
        for sigma in (25.0, 50.0):
            mine = _psnr(colour, model, sigma)
            checks.append((f"CBSD68 σ={sigma:g} > CBM3D", mine, _psnr(colour, "CBM3D", sigma)))
            checks.append((f"CBSD68 σ={sigma:g} ≥ FFDNet", mine, _psnr(colour, "FFDNet", sigma)))
        for part, name in (("set12", "Set12"), ("bsd68", "BSD68")):
            grey = rows(part)
            for sigma in (25.0, 50.0):
                bm3d = _psnr(grey, "BM3D", sigma)
                checks.append((f"{name} grey σ={sigma:g} ≥ BM3D", _psnr(grey, model, sigma), bm3d))
        real = rows("cc15")
        noisy = _psnr(real, "Noisy input", None)
        checks.append(("CC15 ≥ noisy + 3 dB", _psnr(real, model, None), None if noisy is None else noisy + 3.0))
        gains = _real_gains(out, model)
        checks.append(("CC15 no image below noisy (smallest gain ≥ 0)", min(gains) if gains else None, 0.0))
        for floor, value, bar in checks:
            margin = None if value is None or bar is None else value - bar
            strict = floor.endswith("> CBM3D")
            holds = None if margin is None else (margin > 0 if strict else margin >= 0)
            records.append(
                {"model": model, "floor": floor, "value": value, "bar": bar, "margin": margin, "holds": holds}
            )
    return records


def floors_markdown(records: list[dict]) -> str:
    models = list(dict.fromkeys(r["model"] for r in records))
    names = list(dict.fromkeys(r["floor"] for r in records))
    cell = {(r["model"], r["floor"]): r for r in records}
    lines = ["| floor | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name in names:
        cells = []
        for model in models:
            r = cell.get((model, name))
            if r is None or r["margin"] is None:
                cells.append("not measured")
            else:
                cells.append(f"{r['value']:.2f} ({r['margin']:+.2f}) {'**met**' if r['holds'] else 'missed'}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _set_tables(out: Path) -> str:
    """Each part's results.md one heading level down, without its title and model list (listed once, above)."""
    blocks = []
    for part in PARTS:
        path = out / part / "results.md"
        if not path.exists():
            continue
        lines = []
        for line in path.read_text().split("\n## Models", 1)[0].splitlines():
            if line.startswith("# Evaluation") or (blocks and line.startswith("Noisy inputs:")):
                continue  # the title, and the conditions paragraph after the first set
            lines.append("#" + line if line.startswith("##") else line)
        blocks.append("\n".join(lines).strip())
    return "\n\n".join(blocks)


def section(out: Path, command: str) -> str:
    records = floors(out)
    listed = ", ".join(
        f"{name}: `{Path(m['weights']).name if m.get('weights') else 'random init'}`"
        for name, m in _model_entries(out).items()
    )
    cached = {part: int(s.get("cached_scores", 0)) for part, s in _summaries(out).items()}
    reused = (
        " Peer scores reused from each part's `peer_scores.jsonl` ("
        + ", ".join(f"{part}: {n}" for part, n in cached.items())
        + "), measured by an earlier run on the same noisy and clean bytes with the same package versions"
        " (`invdn/eval/cache.py`); the rows say so, and their s/MP is that run's."
        if any(cached.values())
        else ""
    )
    return "\n".join([
        START,
        f"Generated by `{command}` from `{out}` (weights: {listed}).{reused}",
        "",
        _set_tables(out),
        "",
        "### Floors (margin in dB against the bar; all images, 8-bit noisy inputs, oracle σ for the peers)",
        "",
        floors_markdown(records),
        END,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the eval suite's output folder")
    parser.add_argument("--results", type=Path, default=None, help="replace the eval-suite section of this file")
    parser.add_argument("--json", action="store_true", help="print the floor records as JSON")
    args = parser.parse_args(argv)
    records = floors(args.out)
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        print(floors_markdown(records))
    if args.results is not None:
        text = args.results.read_text()
        if START not in text or END not in text:
            print(f"{args.results} has no {START} ... {END} section", file=sys.stderr)
            return 2
        command = "python benchmarks/floors.py " + " ".join(argv if argv is not None else sys.argv[1:])
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        write_atomic(args.results, (head + section(args.out, command) + tail).encode(), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
