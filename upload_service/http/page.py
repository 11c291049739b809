"""The browser upload page: GET /upload and its assets.

Our own HTML/JS/CSS live in `static/upload/`. The JavaScript libraries come from
npm (`npm ci` at the repository root installs tus-js-client and hls.js) and are
served straight from `node_modules`, or from `static/vendor/` when a build copied
them there (`npm run vendor`), so a wheel can carry them. Never from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

HERE = Path(__file__).resolve().parent
PAGE_DIR = HERE / "static" / "upload"
VENDOR_DIR = HERE / "static" / "vendor"
OWN_ASSETS = {"upload.js", "upload.css"}
# asset name -> path inside node_modules
NPM_ASSETS = {
    "tus.min.js": "tus-js-client/dist/tus.min.js",
    "hls.min.js": "hls.js/dist/hls.min.js",
}
# The page and our own assets change with deploys: revalidate. Library files are
# versioned by package-lock, and an hour of caching is harmless.
NO_CACHE = {"Cache-Control": "no-cache"}
LIB_CACHE = {"Cache-Control": "public, max-age=3600"}


def node_modules_dirs() -> list[Path]:
    """Where `npm ci` may have put the libraries: the repository root, or the cwd."""
    return [HERE.parents[1] / "node_modules", Path.cwd() / "node_modules"]


def find_library(name: str) -> Path | None:
    vendored = VENDOR_DIR / name
    if vendored.is_file():
        return vendored
    for base in node_modules_dirs():
        path = base / NPM_ASSETS[name]
        if path.is_file():
            return path
    return None


async def upload_page(request: Request) -> Response:
    return FileResponse(PAGE_DIR / "index.html", media_type="text/html", headers=NO_CACHE)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name in OWN_ASSETS:
        return FileResponse(PAGE_DIR / name, headers=NO_CACHE)
    if name in NPM_ASSETS:
        path = find_library(name)
        if path is None:
            return PlainTextResponse(
                f"{name} is not installed: run `npm ci` in the repository root", status_code=404
            )
        return FileResponse(path, media_type="text/javascript", headers=LIB_CACHE)
    return PlainTextResponse("not found", status_code=404)


routes = [
    Route("/upload", upload_page, methods=["GET", "HEAD"]),
    Route("/upload/", upload_page, methods=["GET", "HEAD"]),
    Route("/upload/assets/{name}", asset, methods=["GET", "HEAD"]),
]
