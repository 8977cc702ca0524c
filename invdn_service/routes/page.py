"""GET /: the web page (plain HTML, CSS and JavaScript served from invdn_service/static, no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

INDEX = Path(__file__).resolve().parent.parent / "static" / "index.html"
# The page loads only its own files; images come back as data: or blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(
        INDEX,
        media_type="text/html",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"},
    )
