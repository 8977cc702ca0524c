"""Plain helpers for the tests (not fixtures: those are in conftest.py): small seeded models, hand-built PNG
files, and loading a script that is not a package module."""

from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from invdn.models.invdn import InvDN, InvDNConfig

ROOT = Path(__file__).resolve().parent.parent  # the repository


def random_invdn(seed: int = 0, dtype: torch.dtype = torch.float64, std: float = 0.05, **cfg) -> InvDN:
    """A small paper InvDN with random non-trivial weights (a fresh InvDN is the identity + Haar)."""
    torch.manual_seed(seed)
    cfg.setdefault("blocks_per_level", 2)
    cfg.setdefault("hidden", 8)
    model = InvDN(InvDNConfig(**cfg)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def load_script(relative: str, name: str) -> ModuleType:
    """Import the script at `relative` (to the repository) as module `name`, e.g. benchmarks/peers.py."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, grey + alpha, RGB or RGBA by the channel count) built by hand with filter 0, independent
    of the code under test (Pillow cannot write one)."""
    height, width, channels = samples.shape
    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks
