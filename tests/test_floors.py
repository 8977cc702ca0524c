"""benchmarks/floors.py on a hand-made eval-suite folder: margins, the strict CBM3D bar, every model row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import load_script


def _row(method: str, kind: str, psnr: float, sigma: float | None) -> dict:
    return {"method": method, "kind": kind, "psnr": psnr, "sigma": sigma}


def _suite(out: Path, cached: int = 0) -> Path:
    models = [{"name": "InvDN-LC", "weights": "/x/invdn-lc-v9.safetensors"}]
    parts = {
        "cbsd68": [
            _row("CBM3D", "bm3d", 30.0, 25.0),
            _row("FFDNet", "peer", 30.2, 25.0),
            _row("InvDN-LC", "model", 30.0, 25.0),  # equal to CBM3D: the "beats" bar is strict
            _row("InvDN-LC (x8 ensemble)", "model", 30.25, 25.0),
            _row("CBM3D", "bm3d", 26.0, 50.0),
            _row("FFDNet", "peer", 26.3, 50.0),
            _row("InvDN-LC", "model", 26.3, 50.0),  # equal to FFDNet: ">=" holds
            _row("InvDN-LC (x8 ensemble)", "model", 26.4, 50.0),
        ],
        "cc15": [_row("Noisy input", "noisy", 33.0, None), _row("InvDN-LC", "model", 36.5, None)],
    }
    for part, rows in parts.items():
        (out / part).mkdir(parents=True)
        summary = {"models": models, "rows": rows, "cached_scores": cached}
        (out / part / "summary.json").write_text(json.dumps(summary))
    with (out / "cc15" / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["image", "method", "psnr"])
        w.writeheader()
        for image, noisy, mine in (("a", 30.0, 34.0), ("b", 36.0, 35.5)):
            w.writerow({"image": image, "method": "Noisy input", "psnr": noisy})
            w.writerow({"image": image, "method": "InvDN-LC", "psnr": mine})
    return out


def test_floors_margins_and_ensemble_row(tmp_path: Path) -> None:
    floors = load_script("benchmarks/floors.py", "floors")
    records = {(r["model"], r["floor"]): r for r in floors.floors(_suite(tmp_path / "suite"))}
    plain = records[("InvDN-LC", "CBSD68 σ=25 > CBM3D")]
    assert plain["margin"] == pytest.approx(0.0) and plain["holds"] is False
    assert records[("InvDN-LC", "CBSD68 σ=50 ≥ FFDNet")]["holds"] is True
    assert records[("InvDN-LC (x8 ensemble)", "CBSD68 σ=25 > CBM3D")]["margin"] == pytest.approx(0.25)
    assert records[("InvDN-LC (x8 ensemble)", "CBSD68 σ=25 ≥ FFDNet")]["holds"] is True
    assert records[("InvDN-LC", "CC15 ≥ noisy + 3 dB")]["margin"] == pytest.approx(0.5)
    worst = records[("InvDN-LC", "CC15 no image below noisy (smallest gain ≥ 0)")]
    assert worst["value"] == pytest.approx(-0.5) and worst["holds"] is False
    assert records[("InvDN-LC", "Set12 grey σ=25 ≥ BM3D")]["holds"] is None  # part not run: not measured
    assert "not measured" in floors.floors_markdown(list(records.values()))


def test_results_section_replaced_and_cache_named(tmp_path: Path) -> None:
    floors = load_script("benchmarks/floors.py", "floors")
    out = _suite(tmp_path / "suite", cached=7)
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# head\n{floors.START}\nold\n{floors.END}\ntail\n")
    assert floors.main([str(out), "--results", str(results)]) == 0
    text = results.read_text()
    assert text.startswith("# head\n") and text.endswith("tail\n") and "\nold\n" not in text
    assert "invdn-lc-v9.safetensors" in text and "(cbsd68: 7, cc15: 7)" in text
