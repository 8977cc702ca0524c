"""Default limits of the service, derived from the measured speed of this hardware (see service/README.md).

The figure below was produced by `python benchmarks/load_service.py --speed` (training paused): the server's
own model time per megapixel (invdn_inference_seconds / invdn_megapixels) for each registry model on a 1 MP
image, through the tile scheduler at its default tile. The slowest model sets the limits, so that every model
meets them.
"""

from __future__ import annotations

# Slowest registry model's seconds per megapixel. PLACEHOLDER until measured.
MEASURED_SECONDS_PER_MEGAPIXEL = 10.0
MEASURED_ON = "2 cores, torch.backends.cpu.get_cpu_capability() = AVX512, 1 inference worker x 2 torch threads"

# A synchronous /v1/denoise should end within this on an idle server; larger images go to the job API.
SYNC_SECONDS = 30.0
# Work (in seconds on an idle server) that admitted synchronous requests may queue up at once.
QUEUE_SECONDS = 60.0

SYNC_MAX_PIXELS = int(SYNC_SECONDS / MEASURED_SECONDS_PER_MEGAPIXEL * 1e6)
QUEUE_PIXELS = int(QUEUE_SECONDS / MEASURED_SECONDS_PER_MEGAPIXEL * 1e6)
# Waiting requests beyond the workers; the pixel budget above is the binding limit for large images.
QUEUE_SIZE = 16
# Tile side of one scheduling step (pixels): a new request waits at most one such tile for a busy worker.
SCHEDULE_TILE = 384
