"""Scores of deterministic peers kept between evaluations, keyed by the exact bytes they saw.

CBM3D on a 68-image set takes most of an hour on one core, and its score on an image never changes while the
noisy and clean bytes, the method and its version stay the same. `ScoreCache` keeps (PSNR, SSIM, seconds) per
key: SHA-256 of the method's row name, its `Method.cache_tag` (implementation, versions and device), the
condition's oracle sigma, the scoring code (`SCORE_VERSION` and the versions of the packages that compute the
metrics and estimate sigma), and the noisy input (float64 bytes and shape) and 8-bit clean reference the method
was scored on. Any change to these is a different key, so a stale score cannot be reused. Only methods with a
`cache_tag` are cached; models never are (their weights change).

The file is JSON lines, appended and flushed one score at a time, so an interrupted run keeps what it measured;
a torn last line is skipped on reading. The seconds are the run that measured the score (reports mark such rows).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

Scores = tuple[float, float, float]  # PSNR dB, SSIM, seconds

# Bump when the scoring or a peer's wrapper changes (invdn/eval/metrics.py, run._score, methods.bm3d_denoise,
# benchmarks/peers.py FFDNet): every stored score then stops matching.
SCORE_VERSION = 1


@functools.cache
def package_versions(*packages: str) -> str:
    """'numpy 2.1.0, bm4d absent': the installed version of each distribution, for cache tags."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in packages:
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} absent")
    return ", ".join(parts)


def scoring_environment() -> str:
    """What computes the scores and estimates sigma: `SCORE_VERSION` and the versions of numpy, scipy (BM3D's
    transforms and filters, SSIM's filters), scikit-image (PSNR, SSIM, sigma estimation) and PyWavelets."""
    return f"score v{SCORE_VERSION}, " + package_versions("numpy", "scipy", "scikit-image", "PyWavelets")


def score_key(method: str, tag: str, sigma: float | None, noisy: np.ndarray, clean_u8: np.ndarray) -> str:
    """The cache key of one method on one image: hex SHA-256 of everything its score depends on."""
    h = hashlib.sha256()
    header = {
        "method": method,
        "tag": tag,
        "scoring": scoring_environment(),
        "sigma": sigma,
        "noisy": list(noisy.shape),
        "clean": list(clean_u8.shape),
    }
    h.update(json.dumps(header, sort_keys=True).encode())
    h.update(np.ascontiguousarray(noisy, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(clean_u8, dtype=np.uint8).tobytes())
    return h.hexdigest()


class ScoreCache:
    """Scores by `score_key`, read from and appended to one JSON-lines file (created on the first score)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._scores: dict[str, Scores] = {}
        data = self.path.read_bytes() if self.path.is_file() else b""
        self._torn = bool(data) and not data.endswith(b"\n")  # the next row must start on a new line
        for line in data.splitlines():
            try:  # a line cut mid-write may end inside a multi-byte character: decoding is part of parsing it
                row = json.loads(line.decode("utf-8"))
                self._scores[row["key"]] = (float(row["psnr"]), float(row["ssim"]), float(row["seconds"]))
            except (ValueError, KeyError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                continue  # a torn or foreign line: that score is measured again

    def __len__(self) -> int:
        return len(self._scores)

    def get(self, key: str) -> Scores | None:
        """The stored scores for `key`, or None."""
        return self._scores.get(key)

    def put(self, key: str, scores: Scores, label: str = "") -> None:
        """Store and append one score; `label` (e.g. "CBSD68 σ=25 101085 CBM3D") is for people reading the file."""
        self._scores[key] = scores
        self.path.parent.mkdir(parents=True, exist_ok=True)
        psnr, ssim, seconds = scores
        row = {"key": key, "psnr": psnr, "ssim": ssim, "seconds": seconds, "label": label}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(("\n" if self._torn else "") + json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
        self._torn = False
