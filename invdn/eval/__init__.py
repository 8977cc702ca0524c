"""Evaluation: PSNR/SSIM, dataset tables against CBM3D, and the side-by-side comparison of registry models."""
