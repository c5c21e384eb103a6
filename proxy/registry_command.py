"""``switchyard models register|list|show|check|embed`` and ``switchyard bind|unbind``.

These talk to the state store through Qdrant's own API at ``--url`` (a Switchyard proxy or the
Qdrant behind it: the proxy forwards ``_switchyard`` untouched), so they work before any proxy
runs. Human output by default, ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from switchyard.proxy.command_loading import deferred
from switchyard.proxy.secret_sources import add_secret_argument

DEFAULT_URL = "http://localhost:6333"


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="register, list, show, check and try model specs")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    reg = msub.add_parser("register", help="register a model spec (computes its fingerprint)")
    _common(reg)
    reg.add_argument("id", help="model id, e.g. minilm-l6")
    reg.add_argument("--provider", choices=("openai", "local", "hashing"), required=True)
    reg.add_argument("--model", required=True, help="provider's model name, or path / preset")
    reg.add_argument("--dimensions", type=int, required=True)
    reg.add_argument("--distance", default="Cosine", choices=("Cosine", "Dot", "Euclid", "Manhattan"))
    reg.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True)
    reg.add_argument("--version", default="1")
    reg.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="provider option (base_url, api_key_env, max_batch, rpm, ...); repeatable")
    reg.add_argument("--replace", action="store_true", help="overwrite an existing spec")
    reg.add_argument("--no-fingerprint", action="store_true",
                     help="store without probing the embedder (drift cannot be checked later)")
    reg.set_defaults(handler=_run("_register"))

    for name, fn, text in (("list", "_list", "list registered models"),
                           ("show", "_show", "show one model spec"),
                           ("check", "_check", "recompute the fingerprint and report drift")):
        p = msub.add_parser(name, help=text)
        _common(p)
        if name != "list":
            p.add_argument("id")
        p.set_defaults(handler=_run(fn))

    emb = msub.add_parser("embed", help="embed texts with a registered model; shape, norms, speed")
    _common(emb)
    emb.add_argument("id")
    emb.add_argument("texts", nargs="+")
    emb.set_defaults(handler=_run("_embed"))

    bind = sub.add_parser("bind", help="bind a collection (or alias) to a registered model")
    _common(bind)
    bind.add_argument("collection")
    bind.add_argument("--model", required=True, help="registered model id")
    bind.add_argument("--enforce", action="store_true",
                      help="reject writes that do not fit the model (default: enrich)")
    bind.add_argument("--vector", default="", help="named vector the model fills (default: unnamed)")
    bind.set_defaults(handler=_run("_bind"))

    unbind = sub.add_parser("unbind", help="remove a collection's binding")
    _common(unbind)
    unbind.add_argument("collection")
    unbind.set_defaults(handler=_run("_unbind"))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL),
                   help="Switchyard proxy or Qdrant REST URL (env SWITCHYARD_URL)")
    add_secret_argument(p, "--api-key", env="SWITCHYARD_API_KEY", help="Qdrant API key")
    p.add_argument("--json", action="store_true", help="machine-readable output")



def _run(name: str) -> Callable[[argparse.Namespace], int]:
    """The handler of one action: :func:`switchyard.proxy.registry_actions.run` of ``name``,
    imported when the command runs (the parser stays cheap: see proxy/command_loading.py)."""
    return deferred("switchyard.proxy.registry_actions", "run", name)

