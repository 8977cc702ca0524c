"""Schemathesis hooks for invdn.

- `no_server_error_but_overload`: the one server error allowed is 503 with Retry-After (queue full / loading).
- `flatmap_body`: the schema can only say "binary" for uploads, so generated files are almost never images;
  half of the generated bodies get a real small PNG instead, so the models' path is fuzzed too.

Used by benchmarks/schemathesis_run.sh (SCHEMATHESIS_HOOKS=benchmarks.schemathesis_hooks).
"""

from __future__ import annotations

import io

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image


def _small_png(height: int, width: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = [_small_png(24, 20, 0), _small_png(1, 9, 1), _small_png(33, 17, 2)]


@schemathesis.hook
def flatmap_body(ctx: schemathesis.HookContext, body: object) -> st.SearchStrategy:
    if not (isinstance(body, dict) and "file" in body):
        return st.just(body)
    with_image = [{**body, "file": image} for image in IMAGES]
    if "reference" in body:
        with_image.append({**body, "file": IMAGES[0], "reference": IMAGES[0]})
    return st.sampled_from([body, *with_image])


@schemathesis.check
def no_server_error_but_overload(ctx: schemathesis.CheckContext, response: schemathesis.Response, case) -> None:
    """Fails on any 5xx other than 503, and on a 503 without Retry-After."""
    status = response.status_code
    if status == 503:
        if "retry-after" not in {name.lower() for name in response.headers}:
            raise AssertionError("503 without a Retry-After header")
    elif status >= 500:
        raise AssertionError(f"server error {status}: {response.text[:300]}")
