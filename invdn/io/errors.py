"""The errors of reading and writing images: one hierarchy, all ValueErrors, each message one line saying why."""

from __future__ import annotations


class ImageError(ValueError):
    """An image that cannot be denoised; the message says why in one line."""


class UnsupportedImage(ImageError):
    """Not an image, an image kind this program does not handle, or a format it cannot write."""


class CorruptImage(ImageError):
    """An image whose data is truncated or damaged."""


class ImageTooLarge(ImageError):
    """An image with more pixels than allowed."""
