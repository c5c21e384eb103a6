"""The status page: ``GET /switchyard/`` serves one HTML file, everything else is the admin API.

The page (``static/status.html``: no build step, no external assets) reads
``/switchyard/v1/migrations``, follows each migration's ``watch`` stream (one JSON status per
line) and the proxy's own metrics (shadow overlap), and posts transitions with the admin key
the operator types in (kept in the tab's session storage, sent as ``switchyard-admin-key``).
Serving the file reveals nothing: every call it makes is checked by the admin API like any
other (loopback or key). A Content-Security-Policy admits only the page's own inline script
(by its hash) and same-origin requests, and every value is written as text, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from aiohttp import web

PATH = "/switchyard/"


def _page() -> tuple[bytes, str]:
    html = resources.files("switchyard.proxy.frontend").joinpath("static/status.html").read_bytes()
    script = re.search(rb"<script>(.*?)</script>", html, re.S)
    assert script is not None, "status.html has its script inline"
    digest = base64.b64encode(hashlib.sha256(script.group(1)).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, csp


def status_routes() -> list[web.RouteDef]:
    html, csp = _page()

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=html, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                                     "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})

    return [web.get(PATH, page)]
