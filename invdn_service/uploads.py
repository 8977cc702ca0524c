"""Uploads held in memory and checked in order of cost: body bytes, format, header pixels, then decoding.

Nothing from a request touches the disk. `BodyLimitMiddleware` refuses a request whose Content-Length is over
the cap before reading it, and counts the bytes of every body while it streams, stopping at the cap (413).
FastAPI parses multipart forms with Starlette's parser, which spools a file part to a temporary file on disk
once it passes 1 MiB; `InMemoryFormRequest` (which `service.routing.UploadRoute` hands the upload routes) keeps
parts in memory up to the body cap, and since the body can never exceed the cap, no part can reach the disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, UploadFile
from starlette.datastructures import FormData, Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invdn.io import decode as imagedecode
from invdn.io import errors as imageerrors
from invdn.io import formats
from invdn_service.errors import (
    ImageTooLarge,
    ServiceError,
    UndecodableImage,
    UnsupportedFormat,
    UploadTooLarge,
    error_json,
)
from invdn_service.metrics import ServiceMetrics

READ_CHUNK = 64 * 1024  # bytes read from an upload at a time
MAX_FORM_FILES = 2  # `file` and `reference`
MAX_FORM_FIELDS = 16  # text fields of a form (model, samples, ...)
MAX_FIELD_BYTES = 4096  # size of one text field


def _too_large_message(limit: int) -> str:
    return f"upload larger than the limit of {limit} bytes ({limit / 2**20:.1f} MiB)"


class BodyLimitMiddleware:
    """Caps request bodies at `max_bytes`: by Content-Length before reading, then by counting while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: ServiceMetrics | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await error_json(400, "invalid Content-Length header", "bad_request")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                if self.metrics is not None:
                    self.metrics.rejects.labels(reason="upload_bytes").inc()
                response = error_json(413, _too_large_message(self.max_bytes), "upload_too_large")
                await response(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(_too_large_message(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)


class InMemoryFormRequest(Request):
    """A request whose multipart parts stay in memory (see the module docstring)."""

    async def form(  # type: ignore[override]
        self,
        *,
        max_files: int | float = MAX_FORM_FILES,
        max_fields: int | float = MAX_FORM_FIELDS,
        max_part_size: int = MAX_FIELD_BYTES,
    ) -> FormData:
        cached = getattr(self, "_in_memory_form", None)
        if cached is not None:
            return cached
        content_type = self.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return await super().form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)
        parser = MultiPartParser(
            self.headers,
            self.stream(),
            max_files=min(max_files, MAX_FORM_FILES),
            max_fields=min(max_fields, MAX_FORM_FIELDS),
            max_part_size=min(max_part_size, MAX_FIELD_BYTES),
        )
        # The body is capped at max_upload_bytes, so a part never outgrows this and never rolls over to disk.
        parser.spool_max_size = self.app.state.settings.max_upload_bytes + 1
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise ServiceError(f"malformed multipart body: {exc.message}") from exc
        self._in_memory_form = form
        return form


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """The upload's bytes, read in chunks and abandoned as soon as they pass `max_bytes` (413)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise UploadTooLarge(_too_large_message(max_bytes))
        chunks.append(chunk)
    if size == 0:
        raise UndecodableImage("the uploaded file is empty")
    return b"".join(chunks)


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an accepted image says."""

    format: str  # as invdn.io.formats names it: PNG, JPEG, WEBP, TIFF, GIF, BMP
    width: int  # pixels
    height: int  # pixels

    @property
    def pixels(self) -> int:
        return self.width * self.height


def check_image(data: bytes, allowed_formats: list[str], max_pixels: int) -> ImageHeader:
    """Format by content (415), then size from the header without decoding (413 over `max_pixels`, 422 when
    the header cannot be read)."""
    kind = formats.sniff_format(data[: formats.SNIFF_BYTES])
    if kind is None or kind.lower() not in allowed_formats:
        shown = kind or "not a recognised image"
        raise UnsupportedFormat(f"unsupported file type ({shown}); accepted: {', '.join(allowed_formats)}")
    try:
        _, width, height = imagedecode.read_image_header(data)
    except imageerrors.ImageTooLarge as exc:  # Pillow's own bomb limit (~179 MP) tripped first: say ours instead
        raise ImageTooLarge(f"image has more pixels than the limit of {max_pixels} pixels") from exc
    except imageerrors.ImageError as exc:
        raise as_service_error(exc) from exc
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels")
    return ImageHeader(kind, width, height)


def as_service_error(exc: imageerrors.ImageError) -> ServiceError:
    """Maps the image library's errors to HTTP errors."""
    if isinstance(exc, imageerrors.ImageTooLarge):
        return ImageTooLarge(str(exc))
    if isinstance(exc, imageerrors.UnsupportedImage):
        return UnsupportedFormat(str(exc))
    return UndecodableImage(f"the image could not be decoded: {exc}")


def decode(data: bytes, max_pixels: int) -> imagedecode.LoadedImage:
    """Decodes an image already checked by `check_image` (run it off the event loop)."""
    try:
        return imagedecode.decode_image(data, max_pixels=max_pixels)
    except imageerrors.ImageError as exc:
        raise as_service_error(exc) from exc
