"""How the Edge engine's plain-``Exception`` texts map onto Qdrant's status codes (a table).

Edge raises Qdrant's own messages without a type; :func:`translate_edge` gives them the status
Qdrant's REST and gRPC front ends would: a refused request is ``400``, a missing point ``404``, and
a failure of the engine itself (storage, WAL) ``500``, never blamed on the caller's input.
"""

from __future__ import annotations

import pytest

from switchyard.proxy.embedded.edge_worker import translate_edge
from switchyard.proxy.errors import BadRequest, NotFound, SwitchyardError

CASES = [
    ("No point with id 7 found", NotFound, 404, "Not found: No point with id 7 found"),
    ("No point with id 7", NotFound, 404, "Not found: No point with id 7 found"),
    ("Wrong input: Vector dimension error: expected dim: 4, got 3", BadRequest, 400,
     "Wrong input: Vector dimension error: expected dim: 4, got 3"),
    ("Bad request: empty filter", BadRequest, 400, "Wrong input: Bad request: empty filter"),
    ("Service runtime error: failed to open WAL /s/wal: Can't lock", SwitchyardError, 500,
     "Service internal error: failed to open WAL /s/wal: Can't lock"),
]


@pytest.mark.parametrize(("text", "kind", "status", "message"), CASES)
def test_edge_texts_get_qdrants_status(
    text: str, kind: type[SwitchyardError], status: int, message: str
) -> None:
    err = translate_edge(Exception(text))
    assert type(err) is kind
    assert err.http_status == status
    assert err.message == message


def test_a_switchyard_error_passes_through() -> None:
    err = NotFound("Collection `x` doesn't exist!", raw=True)
    assert translate_edge(err) is err
