"""The upstream client of ``switchyard schema``: plain REST calls to Qdrant or a proxy.

The planner's :class:`~switchyard.proxy.schema.planner.Call` values are sent as they are, so
``--plan-json`` shows exactly what goes out. Requests carry the API key (``api-key``) and
Switchyard's tool header (a proxy then serves ``/switchyard/v1``). Errors become
:class:`UpstreamError` / :class:`NotFound` / :class:`Conflict` with Qdrant's own message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from switchyard.proxy.errors import Conflict, NotFound, SwitchyardError, UpstreamError
from switchyard.proxy.schema.planner import Call
from switchyard.proxy.state.store import tool_headers


class QdrantHttp:
    def __init__(self, url: str, api_key: str | None = None, admin_key: str | None = None,
                 timeout: float = 120.0) -> None:
        headers = dict(tool_headers(admin_key))
        if admin_key:
            headers["switchyard-admin-key"] = admin_key
        if api_key:
            headers["api-key"] = api_key
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, call: Call) -> Any:
        return await self.request(call.method, call.path, call.body)

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        try:
            resp = await self._client.request(method, path, json=body, **kw)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{method} {path} failed: {exc}") from exc
        return _result(method, path, resp)

    async def collection(self, name: str) -> dict[str, Any] | None:
        """``GET /collections/{name}``'s result, ``None`` when it does not exist."""
        try:
            return dict(await self.request("GET", f"/collections/{quote(name, safe='')}"))
        except NotFound:
            return None

    async def aliases(self) -> dict[str, str]:
        found = await self.request("GET", "/aliases")
        return {a["alias_name"]: a["collection_name"] for a in found.get("aliases", [])}

    async def snapshots(self, collection: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", f"/collections/{quote(collection, safe='')}/snapshots"))

    async def download(self, collection: str, name: str) -> bytes:
        path = f"/collections/{quote(collection, safe='')}/snapshots/{quote(name, safe='')}"
        try:
            resp = await self._client.get(path)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"GET {path} failed: {exc}") from exc
        if resp.status_code != 200:
            _result("GET", path, resp)
        return resp.content

    async def upload(self, collection: str, name: str, data: bytes) -> Any:
        """Recover ``collection`` from snapshot bytes (``POST .../snapshots/upload``)."""
        path = f"/collections/{quote(collection, safe='')}/snapshots/upload?wait=true"
        try:
            resp = await self._client.post(path, files={"snapshot": (name, data)})
        except httpx.HTTPError as exc:
            raise UpstreamError(f"POST {path} failed: {exc}") from exc
        return _result("POST", path, resp)


def _result(method: str, path: str, resp: httpx.Response) -> Any:
    try:
        doc = resp.json()
    except ValueError:
        doc = {}
    if resp.status_code < 300:
        return doc.get("result") if isinstance(doc, dict) else doc
    status = doc.get("status") if isinstance(doc, dict) else None
    reason = status.get("error") if isinstance(status, dict) else resp.text[:300]
    text = f"{method} {path}: {reason}"
    if resp.status_code == 404:
        raise NotFound(text)
    if resp.status_code == 409:
        raise Conflict(text)
    if resp.status_code < 500:
        raise SwitchyardError(text, raw=True)
    raise UpstreamError(text)
