"""Saving and loading model weights: safetensors files that carry their own `model_args`.

A weights file holds the state dict plus metadata {"model_type": ..., "model_args": JSON}, so the file alone
rebuilds its model. Shipped weights live in `weights/` (or $INVDN_WEIGHTS_DIR) and are listed with their sha256 in
`weights/manifest.json`; `load()` checks the hash before using a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from invdn.io.atomic import write_atomic
from invdn.models import registry


class WeightsError(ValueError):
    """A weights file is missing, corrupt, of the wrong kind, or fails its checksum."""


def weights_dir() -> Path:
    env = os.environ.get("INVDN_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"  # the checkout's weights/


def canonical_model_type(name: str) -> str:
    """The registry's canonical name for a model name or alias (e.g. "danet" -> "danet-r")."""
    try:
        return registry.get(name).name
    except registry.UnknownModel as exc:
        raise WeightsError(str(exc)) from None


def build_model(model_type: str, model_args: dict | None = None) -> nn.Module:
    """Construct a randomly initialised model of architecture `model_type` (a weights file's metadata)."""
    try:
        spec = registry.by_type(model_type)
    except registry.UnknownModel as exc:
        raise WeightsError(str(exc)) from None
    return spec.build(model_args or {})


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(model: nn.Module, path: str | Path, dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Write `model`'s weights and `model_args` to a safetensors file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {"model_type": model.model_type, "model_args": json.dumps(model.model_args)}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    # re-saving (publishing, checkpoints) replaces the file: overwrite=True, still never a partial file
    write_atomic(path, safetensors_bytes(state, metadata=meta), overwrite=True)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_model_args(path: str | Path) -> dict:
    """The `model_args` (architecture) stored in a weights file's metadata."""
    meta = read_metadata(path)
    if "model_args" not in meta:
        raise WeightsError(f"{path}: no model_args metadata; was it written by invdn.models.weights.save?")
    return json.loads(meta["model_args"])


def load_file_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a weights file alone (its metadata names the model and its arguments)."""
    meta = read_metadata(path)
    if "model_type" not in meta or "model_args" not in meta:
        raise WeightsError(f"{path}: no model_type/model_args metadata; was it written by invdn.models.weights.save?")
    model = build_model(meta["model_type"], json.loads(meta["model_args"]))
    state = load_file(str(path), device="cpu")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{path}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.pretrained = True
    model.weights_path = str(path)
    model.weights_meta = meta
    return model.to(device).eval()


def average(sources: list[str | Path], dest: str | Path, extra: dict | None = None) -> Path:
    """Write the element-wise mean of the weights of `sources` (files of one model type and `model_args`, e.g.
    checkpoints of one run) to `dest`, float32, with the metadata of the last source plus `extra`."""
    if not sources:
        raise ValueError("average needs at least one weights file")
    models = [load_file_model(s) for s in sources]
    kinds = {(m.model_type, json.dumps(m.model_args, sort_keys=True)) for m in models}
    if len(kinds) > 1:
        raise WeightsError(f"cannot average different models: {sorted(kinds)}")
    mean = models[-1]
    states = [m.state_dict() for m in models]
    with torch.no_grad():
        for key, value in mean.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.stack([s[key].float() for s in states]).mean(dim=0))
    meta = {k: v for k, v in read_metadata(sources[-1]).items() if k not in ("model_type", "model_args")}
    meta["averaged_from"] = ", ".join(str(s) for s in sources)
    return save(mean, dest, extra={**meta, **(extra or {})})


def manifest() -> dict[str, dict]:
    """The shipped weights: {model_type: {"file": ..., "sha256": ..., ...}} from weights/manifest.json."""
    path = weights_dir() / "manifest.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def shipped_path(model_type: str, verify: bool = True) -> Path | None:
    """Path of the shipped weights for `model_type`, sha256-checked; None if nothing is shipped."""
    entry = manifest().get(canonical_model_type(model_type))
    if not entry:
        return None
    path = weights_dir() / entry["file"]
    if not path.exists():
        raise WeightsError(f"{path} is listed in manifest.json but missing (git lfs? partial clone?)")
    if verify and sha256_file(path) != entry["sha256"]:
        raise WeightsError(f"{path}: sha256 does not match manifest.json; the file is corrupt or was replaced")
    return path


def copy_shipped(destination: str | Path) -> list[Path]:
    """Copy what the manifest ships (each listed file, sha256-checked, with manifest.json and MODEL_CARD.md when
    present) from `weights_dir()` into `destination`, leaving superseded versions behind (the Docker image's weights
    stage). Returns the files written. Raises WeightsError when nothing is shipped or a listed file is missing or
    fails its hash, and FileExistsError, before writing anything, when a file is already there."""
    source = weights_dir()
    entries = manifest()
    if not entries:
        raise WeightsError(f"{source / 'manifest.json'} ships no weights")
    files = [path for name in entries if (path := shipped_path(name)) is not None] + [source / "manifest.json"]
    files += [card] if (card := source / "MODEL_CARD.md").exists() else []
    targets = [Path(destination) / path.name for path in files]
    if existing := [str(t) for t in targets if t.exists()]:
        raise FileExistsError(f"not overwriting {', '.join(existing)}")
    for path, target in zip(files, targets, strict=True):
        write_atomic(target, path.read_bytes())
    return targets


def load(
    model: str = registry.DEFAULT, path: str | Path | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """Load a registry model for inference: from `path`, else the shipped weights, else random init
    (`pretrained=False`)."""
    name = canonical_model_type(model)
    spec = registry.get(name)
    if path is None:
        path = shipped_path(name)
    if path is None:
        net = spec.build({})
        net.pretrained = False
        return net.to(device).eval()
    net = load_file_model(path, device)
    if net.model_type != spec.model_type:
        raise WeightsError(f"{path} holds a {net.model_type!r} model, not {name!r} ({spec.model_type!r})")
    return net


def publish(source: str | Path, name: str, dtype: torch.dtype | None = None, card: dict | None = None) -> Path:
    """Copy a trained model (a weights file) into weights/NAME.safetensors and list it in manifest.json.

    `dtype` (e.g. torch.float16) shrinks the file; loading converts back to float32. `card` holds numbers for
    the manifest entry (training pixels, steps, hardware...).
    """
    model = load_file_model(source)
    meta = read_metadata(source)
    extra = {k: v for k, v in meta.items() if k not in ("model_type", "model_args")}
    path = save(model, weights_dir() / f"{name}.safetensors", dtype=dtype, extra=extra)
    entries = manifest()
    spec = registry.spec_of(model)
    if spec is None:
        raise WeightsError(f"{source}: model type {model.model_type!r} is not in the registry")
    entries[spec.name] = {
        "file": path.name,
        "sha256": sha256_file(path),
        "dtype": str(dtype or torch.float32).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        **(card or {}),
    }
    manifest_bytes = (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode()
    write_atomic(weights_dir() / "manifest.json", manifest_bytes, overwrite=True)
    return path


def weights_info(model: str) -> dict:
    """What the service and `invdn info` show about a model's weights: file, sha256, model-card numbers."""
    model_type = canonical_model_type(model)
    entry = dict(manifest().get(model_type, {}))
    entry["shipped"] = bool(entry)
    return entry
