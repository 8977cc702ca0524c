"""Inference: the tiling engine (`engine.Denoiser`), tile geometry, and the inference-only fast paths."""
