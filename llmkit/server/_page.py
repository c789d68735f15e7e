"""The chat page at ``/``: three files shipped in ``llmkit/server/ui/``, served as they are.

The page is static and holds no data: everything it shows comes from the API it calls
(``/v1/models``, ``/v1/chat/completions``) with the key the person types into it. So the
page itself is served without a key -- a browser navigation cannot send a bearer header --
while every API request it makes goes through the same authentication and the same
generation slots as any other client's. ``create_app(ui=False)`` (``llmkit serve --no-ui``)
leaves these routes out.

The headers keep the page to itself: a Content-Security-Policy that allows scripts, styles
and requests from this origin only (no inline script, no other host), ``no-referrer``, no
framing, no MIME sniffing.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["PAGE_MEDIA_TYPES", "PAGE_PATHS", "page_routes"]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": _CSP,
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # Small files, and a new llmkit version may change them: revalidate each time.
    "cache-control": "no-cache",
}

# path -> (file in ui/, media type)
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/ui/chat.css": ("chat.css", "text/css; charset=utf-8"),
}

PAGE_PATHS = frozenset(_FILES)
PAGE_MEDIA_TYPES = {path: media_type for path, (_, media_type) in _FILES.items()}


def page_routes() -> list[Route]:
    """``GET``/``HEAD`` routes for the page and its script and style sheet."""
    folder = resources.files("llmkit.server").joinpath("ui")
    routes = []
    for path, (name, media_type) in _FILES.items():
        body = folder.joinpath(name).read_bytes()  # read once: the files never change

        async def serve(
            request: Request, body: bytes = body, media_type: str = media_type
        ) -> Response:
            return Response(body, media_type=media_type, headers=_HEADERS)

        routes.append(Route(path, serve, methods=["GET"], name=f"ui:{name}"))
    return routes
