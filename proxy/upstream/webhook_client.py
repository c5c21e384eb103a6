"""POST a JSON body to a webhook URL (the lifecycle hooks' only HTTP seam).

Returns the status code; transport failures become :class:`~switchyard.proxy.errors.UpstreamError`.
"""

from __future__ import annotations

import aiohttp

from switchyard.proxy.errors import UpstreamError
from switchyard.proxy.secret_sources import redact_url


async def post_json(url: str, body: bytes, timeout: float) -> int:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                return resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        # the URL and aiohttp's message (which may quote it) can carry the hook's token
        raise UpstreamError(f"webhook {redact_url(url)} failed: {type(exc).__name__}") from exc
