"""The report of an evaluation: the summary (mean PSNR/SSIM and seconds per megapixel per dataset, condition and
method), the markdown tables, per_image.csv, summary.json and the PSNR-vs-parameters plot.

Published numbers (``QUOTED``) are reported in their own table, never mixed with measured rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from invdn.eval.config import EvalConfig
from invdn.eval.run import EvalResults, ImageScore
from invdn.io.atomic import write_atomic

# Published PSNR (dB) for AWGN, quoted from the DPIR and FFDNet repositories' tables: dataset -> method -> sigma.
QUOTED: dict[str, dict[str, dict[int, float]]] = {
    "CBSD68": {
        "CBM3D": {15: 33.52, 25: 30.71, 50: 27.38},
        "CDnCNN-B": {15: 33.90, 25: 31.24, 50: 27.95},
        "FFDNet": {15: 33.87, 25: 31.21, 50: 27.96},
        "DRUNet": {15: 34.30, 25: 31.69, 50: 28.51},
    },
    "Kodak24": {
        "CBM3D": {15: 34.28, 25: 32.15, 50: 28.46},
        "FFDNet": {15: 34.63, 25: 32.13, 50: 28.98},
        "DRUNet": {15: 35.31, 25: 32.89, 50: 29.86},
    },
}
QUOTED_SOURCE = "DPIR and FFDNet repositories' tables (full datasets, float noisy inputs)"


def _finite(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def summarize(results: EvalResults) -> dict:
    """Summary dict (JSON-ready): mean PSNR/SSIM and seconds per megapixel per dataset, condition, method."""
    rows = []
    groups: dict[tuple[str, str, str], list[ImageScore]] = {}
    for s in results.scores:
        groups.setdefault((s.dataset, s.condition, s.method), []).append(s)
    for (dataset, condition, method), items in groups.items():
        info = results.methods.get(method, {})
        mp = sum(i.megapixels for i in items)
        rows.append(
            {
                "dataset": dataset,
                "condition": condition,
                "sigma": items[0].sigma,
                "method": method,
                "kind": info.get("kind"),
                "params": info.get("params"),
                "note": info.get("note", ""),
                "images": len(items),
                "psnr": _finite(float(np.mean([i.psnr for i in items]))),
                "ssim": _finite(float(np.mean([i.ssim for i in items]))),
                "sec_per_mp": _finite(sum(i.seconds for i in items) / mp) if mp else None,
                "cached": sum(i.cached for i in items),  # scores reused from a score cache (invdn.eval.cache)
            }
        )
    quoted = [
        {"dataset": d, "method": m, "sigma": s, "psnr": v, "source": QUOTED_SOURCE, "quoted": True}
        for d, methods in QUOTED.items()
        for m, by_sigma in methods.items()
        for s, v in by_sigma.items()
    ]
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in _config_dict(results.config).items()},
        "datasets": results.datasets,
        "models": results.models,
        "rows": rows,
        "quoted": quoted,
        "failures": results.failures,
        "cached_scores": results.cached,  # peer scores reused from a score cache (invdn.eval.cache), not re-run
    }


def _config_dict(config: EvalConfig) -> dict:
    d = asdict(config)
    d["datasets"] = [str(p) for p in config.datasets]
    d["pairs"] = [str(p) for p in config.pairs]
    return d


def _fmt_cell(row: dict) -> str:
    """'PSNR / SSIM' of a summary row (PSNR None means identical images: inf)."""
    p = "inf" if row["psnr"] is None else f"{row['psnr']:.2f}"
    s = "—" if row["ssim"] is None else f"{row['ssim']:.4f}"
    return f"{p} / {s}"


def _quoted_for(dataset: str) -> dict[str, dict[int, float]] | None:
    for key, table in QUOTED.items():
        if key.lower() == dataset.lower():
            return table
    return None


def markdown_report(summary: dict) -> str:
    """Markdown tables: measured rows per dataset, the parameter table, then quoted published rows apart."""
    config = summary["config"]
    out = io.StringIO()
    out.write("# Evaluation\n\n")
    out.write(
        f"Noisy inputs: {'saved as 8-bit (clipped and rounded)' if config['clip8'] else 'float, unclipped'}; "
        "outputs quantised to 8 bits before scoring; PSNR (dB) / SSIM from scikit-image. "
        "Noise is seeded per (dataset, image, noise), identical for every method.\n"
    )
    if config.get("limit"):
        out.write(f"\nOnly the first {config['limit']} images of each dataset (sorted by name).\n")
    rows = summary["rows"]
    for dataset, info in summary["datasets"].items():
        drows = [r for r in rows if r["dataset"] == dataset]
        conditions = list(dict.fromkeys(r["condition"] for r in drows))
        methods = list(dict.fromkeys(r["method"] for r in drows))
        kind = "real noise pairs" if info["kind"] == "pairs" else ("grey" if info["grey"] else "colour")
        out.write(f"\n## {dataset} ({info['images']} images, {kind}) — measured\n\n")
        header = ["Method", "Params"] + [f"{c} PSNR / SSIM" for c in conditions] + ["s/MP", "Note"]
        out.write("| " + " | ".join(header) + " |\n")
        out.write("|" + "|".join(["---"] * len(header)) + "|\n")
        for m in methods:
            mrows = {r["condition"]: r for r in drows if r["method"] == m}
            first = next(iter(mrows.values()))
            cells = [m, f"{first['params'] / 1e6:.2f}M" if first["params"] else "—"]
            for c in conditions:
                r = mrows.get(c)
                cells.append(_fmt_cell(r) if r else "—")
            secs = [r["sec_per_mp"] for r in mrows.values() if r["sec_per_mp"] is not None]
            cells.append(f"{np.mean(secs):.3g}" if secs and first["kind"] != "noisy" else "—")
            reused = sum(r.get("cached", 0) for r in mrows.values())
            cells.append("; ".join(n for n in (first["note"], _reused_note(reused, mrows)) if n))
            out.write("| " + " | ".join(cells) + " |\n")
        quoted = _quoted_for(dataset) if info["kind"] == "synthetic" else None
        sigmas = [r["sigma"] for r in drows if r["sigma"] is not None]
        shown = sorted({int(s) for s in sigmas if any(int(s) in v for v in (quoted or {}).values())})
        if quoted and shown:
            out.write(f"\n### {dataset} — quoted (published, not measured here; source: {QUOTED_SOURCE})\n\n")
            out.write("| Method (quoted) | " + " | ".join(f"σ={s} PSNR" for s in shown) + " |\n")
            out.write("|" + "|".join(["---"] * (len(shown) + 1)) + "|\n")
            for m, by_sigma in quoted.items():
                cells = [f"{by_sigma[s]:.2f}" if s in by_sigma else "—" for s in shown]
                out.write(f"| {m} (quoted) | " + " | ".join(cells) + " |\n")
    if summary["models"]:
        out.write("\n## Models\n\n| Model | Parameters | Weights |\n|---|---|---|\n")
        for m in summary["models"]:
            weights = m.get("weights") or ("random init (no trained weights)" if not m["pretrained"] else "shipped")
            out.write(f"| {m['name']} | {m['params']:,} | {weights} |\n")
    if summary["failures"]:
        out.write(f"\n**{len(summary['failures'])} image(s) skipped:**\n\n")
        for f in summary["failures"]:
            out.write(f"- {f['path']}: {f['error']}\n")
    return out.getvalue()


def _reused_note(reused: int, rows: dict[str, dict]) -> str:
    """The note of a row whose scores came (partly) from a score cache: its s/MP is from an earlier run."""
    if not reused:
        return ""
    total = sum(r["images"] for r in rows.values())
    return f"{reused} of {total} scores reused from the score cache (same bytes; s/MP from the run that measured them)"


def _csv_bytes(scores: list[ImageScore]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["dataset", "condition", "sigma", "image", "method", "psnr", "ssim", "seconds", "megapixels", "cached"]
    writer.writerow(header)
    for s in scores:
        writer.writerow(
            [
                s.dataset,
                s.condition,
                "" if s.sigma is None else f"{s.sigma:g}",
                s.image,
                s.method,
                f"{s.psnr:.4f}",
                f"{s.ssim:.5f}",
                f"{s.seconds:.4f}",
                f"{s.megapixels:.5f}",
                int(s.cached),
            ]
        )
    return buf.getvalue().encode()


def plot_psnr_vs_params(summary: dict) -> bytes | None:
    """PNG bytes: PSNR against parameter count for the learned models (CBM3D as dashed lines); None if empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if r["psnr"] is not None]
    series = list(dict.fromkeys((r["dataset"], r["condition"]) for r in rows))
    if not any(r["params"] for r in rows):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (dataset, condition) in enumerate(series):
        colour = colours[k % len(colours)]
        srows = [r for r in rows if r["dataset"] == dataset and r["condition"] == condition]
        learned = [r for r in srows if r["params"]]
        ax.plot(
            [r["params"] for r in learned],
            [r["psnr"] for r in learned],
            "o",
            color=colour,
            label=f"{dataset} {condition}",
        )
        for r in learned:
            ax.annotate(r["method"], (r["params"], r["psnr"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
        for r in srows:
            if r["kind"] == "bm3d" and "tuned" not in r["method"]:
                ax.axhline(r["psnr"], color=colour, linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("PSNR vs parameters (dashed: CBM3D, same noisy images)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(results: EvalResults, out_dir: str | Path) -> dict[str, Path]:
    """Write per_image.csv, summary.json, results.md and psnr_vs_params.png (atomically) into ``out_dir``."""
    out_dir = Path(out_dir)
    summary = summarize(results)
    written = {
        "csv": out_dir / "per_image.csv",
        "json": out_dir / "summary.json",
        "markdown": out_dir / "results.md",
    }
    # a report is rewritten on every evaluation: overwrite=True (still never a partial file)
    write_atomic(written["csv"], _csv_bytes(results.scores), overwrite=True)
    write_atomic(written["json"], (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode(), overwrite=True)
    write_atomic(written["markdown"], markdown_report(summary).encode(), overwrite=True)
    png = plot_psnr_vs_params(summary)
    if png is not None:
        written["plot"] = out_dir / "psnr_vs_params.png"
        write_atomic(written["plot"], png, overwrite=True)
    return written
