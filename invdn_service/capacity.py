"""Default limits of the service, derived from the measured speed of this hardware (see invdn_service/README.md).

The figures below were produced by `python benchmarks/load_service.py --fairness --requests 40 --concurrency 4
--size 256 --json` with training paused (its "speed" section, benchmarks/load_service_runs/fairness-5.json): the
server's own model time per megapixel of each registry model on a 1024x1024 image run as a job through the tile
scheduler at its default tile (256) and settings (1 inference worker, 2 torch threads), on a 2-core machine where
torch.backends.cpu.get_cpu_capability() is AVX512. The slowest model sets the synchronous limits, so that every
model meets them; a comparison runs every model, so its limit follows from their sum.
"""

from __future__ import annotations

# Seconds of model time per megapixel, by model (2 cores, AVX512, fp32, tiles of 256).
MEASURED_SECONDS_PER_MEGAPIXEL = {"invdn": 2.756, "invdn-paper": 16.79, "danet-r": 4.31}
MEASURED_ON = "2 cores, torch.backends.cpu.get_cpu_capability() = AVX512, 1 inference worker x 2 torch threads"

SLOWEST = max(MEASURED_SECONDS_PER_MEGAPIXEL.values())  # s/MP of the slowest model
ALL_MODELS = sum(MEASURED_SECONDS_PER_MEGAPIXEL.values())  # s/MP of one comparison (every model)

# A synchronous answer (/v1/denoise, /v1/compare) should take at most this on an idle server; larger images go to
# the job API (denoise) or are scaled down by the page (compare).
SYNC_SECONDS = 30.0
# Work (seconds on an idle server) that admitted synchronous requests may have queued at once.
QUEUE_SECONDS = 60.0


def _megapixels(seconds: float, seconds_per_megapixel: float) -> int:
    """Pixels done in `seconds`, rounded down to 0.1 MP."""
    return int(seconds / seconds_per_megapixel * 10) * 100_000


SYNC_MAX_PIXELS = _megapixels(SYNC_SECONDS, SLOWEST)  # 1.7 MP
COMPARE_MAX_PIXELS = _megapixels(SYNC_SECONDS, ALL_MODELS)  # 1.2 MP
QUEUE_PIXELS = _megapixels(QUEUE_SECONDS, SLOWEST)  # 3.5 MP
# Waiting requests beyond the workers; for large images the pixel budget above binds first.
QUEUE_SIZE = 16
# Tile side of one scheduling step (pixels): a new request waits at most one such tile for a busy worker. At 384 a
# contended fairness run saw 256x256 requests' p95 at 2.37x idle while a 12 MP job ran; at 256 (a job tile then
# costs about what a 256x256 request does) the runs stayed within 2x (invdn_service/README.md).
SCHEDULE_TILE = 256
