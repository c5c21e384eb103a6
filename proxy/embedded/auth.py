"""API-key checks for the embedded upstream, as Qdrant does them.

Qdrant reads the key from the ``api-key`` header (REST and gRPC metadata) or from
``Authorization: Bearer <key>``. With a key configured, a request without a valid key gets 401
(``UNAUTHENTICATED``); a read-only key may read but gets 403 (``PERMISSION_DENIED``) on writes.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from switchyard.proxy.errors import Forbidden, Unauthorized


@dataclass(frozen=True, slots=True)
class ApiKeys:
    api_key: str | None = None
    read_only_api_key: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.api_key or self.read_only_api_key)

    def check(self, headers: Mapping[str, str], *, write: bool) -> None:
        """Raise :class:`Unauthorized` / :class:`Forbidden` unless ``headers`` allow the call."""
        if not self.enabled:
            return
        presented = presented_key(headers)
        if presented is None:
            raise Unauthorized("Must provide an API key or an Authorization bearer token")
        if self.api_key and hmac.compare_digest(presented, self.api_key):
            return
        if self.read_only_api_key and hmac.compare_digest(presented, self.read_only_api_key):
            if write:
                raise Forbidden("Write access denied: the read-only API key cannot modify data")
            return
        raise Unauthorized("Invalid API key or JWT")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, from ``api-key`` or ``authorization: Bearer``; lower-case names."""
    key = headers.get("api-key")
    if key:
        return key
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None
