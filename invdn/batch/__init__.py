"""Batch denoising of folders: planning, the threaded pipeline, reports, sharding and Ray."""
