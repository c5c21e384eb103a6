"""``switchyard models register|list|show|check|embed`` and ``switchyard bind|unbind``.

These talk to the state store through Qdrant's own API at ``--url`` (a Switchyard proxy or the
Qdrant behind it: the proxy forwards ``_switchyard`` untouched), so they work before any proxy
runs. Human output by default, ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from qdrant_client import AsyncQdrantClient

from switchyard.proxy import registry
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.secret_sources import add_secret_argument
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore, tool_headers

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
    reg.set_defaults(handler=_run(_register))

    for name, fn, text in (("list", _list, "list registered models"),
                           ("show", _show, "show one model spec"),
                           ("check", _check, "recompute the fingerprint and report drift")):
        p = msub.add_parser(name, help=text)
        _common(p)
        if name != "list":
            p.add_argument("id")
        p.set_defaults(handler=_run(fn))

    emb = msub.add_parser("embed", help="embed texts with a registered model; shape, norms, speed")
    _common(emb)
    emb.add_argument("id")
    emb.add_argument("texts", nargs="+")
    emb.set_defaults(handler=_run(_embed))

    bind = sub.add_parser("bind", help="bind a collection (or alias) to a registered model")
    _common(bind)
    bind.add_argument("collection")
    bind.add_argument("--model", required=True, help="registered model id")
    bind.add_argument("--enforce", action="store_true",
                      help="reject writes that do not fit the model (default: enrich)")
    bind.add_argument("--vector", default="", help="named vector the model fills (default: unnamed)")
    bind.set_defaults(handler=_run(_bind))

    unbind = sub.add_parser("unbind", help="remove a collection's binding")
    _common(unbind)
    unbind.add_argument("collection")
    unbind.set_defaults(handler=_run(_unbind))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL),
                   help="Switchyard proxy or Qdrant REST URL (env SWITCHYARD_URL)")
    add_secret_argument(p, "--api-key", env="SWITCHYARD_API_KEY", help="Qdrant API key")
    p.add_argument("--json", action="store_true", help="machine-readable output")


Handler = Callable[[argparse.Namespace, StateStore, AsyncQdrantClient], Awaitable[Any]]


def _run(fn: Handler) -> Callable[[argparse.Namespace], int]:
    """Wrap an async handler; exit status 1 when a drift check finds the model changed."""
    def handler(args: argparse.Namespace) -> int:
        async def go() -> Any:
            client = AsyncQdrantClient(url=args.url, api_key=args.api_key, check_compatibility=False,
                                       metadata=tool_headers())  # a proxy admits it to _switchyard
            store = StateStore(client)
            try:
                return await fn(args, store, client)
            finally:
                await client.close()

        result = asyncio.run(go())
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        return 1 if isinstance(result, dict) and result.get("unchanged") is False else 0

    return handler


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["rpm=600", "base_url=http://x"]`` -> typed dict (JSON values where they parse)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadRequest(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


async def _register(args: argparse.Namespace, store: StateStore, client: AsyncQdrantClient) -> Any:
    from switchyard.proxy.embedders import fingerprint, make_embedder

    data = {
        "id": args.id, "provider": args.provider, "model": args.model,
        "dimensions": args.dimensions, "distance": args.distance,
        "normalize": args.normalize, "version": args.version, **parse_options(args.option),
    }
    spec = ModelSpec.from_dict(data)
    if not args.no_fingerprint:
        embedder = make_embedder(spec)
        try:
            spec = dataclasses.replace(spec, fingerprint=await fingerprint(embedder))
        finally:
            await embedder.aclose()
    env = await registry.register_model(store, spec, replace=args.replace)
    if not args.json:
        print(f"registered model {spec.id} (revision {env.rev}) fingerprint={spec.fingerprint or '-'}")
    return spec.to_dict()


async def _list(args: argparse.Namespace, store: StateStore, client: AsyncQdrantClient) -> Any:
    specs = await registry.list_models(store)
    bindings = await registry.list_bindings(store)
    if not args.json:
        print(f"{'ID':<20} {'PROVIDER':<8} {'DIMS':>5} {'DISTANCE':<9} {'VERSION':<8} {'FINGERPRINT':<20} MODEL")
        for s in specs:
            fp = (s.fingerprint or "-")[:19]
            print(f"{s.id:<20} {s.provider:<8} {s.dimensions:>5} {s.distance:<9} {s.version:<8} {fp:<20} {s.model}")
        if bindings:
            print("\nBINDINGS")
            for b in bindings:
                vector = f" vector={b.vector}" if b.vector else ""
                print(f"  {b.collection} -> {b.model_id} ({b.mode}){vector}")
    return {"models": [s.to_dict() for s in specs], "bindings": [b.to_dict() for b in bindings]}


async def _show(args: argparse.Namespace, store: StateStore, client: AsyncQdrantClient) -> Any:
    spec = await registry.get_model(store, args.id)
    if not args.json:
        for key, value in spec.to_dict().items():
            print(f"{key:>24}: {value}")
    return spec.to_dict()


async def _check(args: argparse.Namespace, store: StateStore, client: AsyncQdrantClient) -> Any:
    from switchyard.proxy.embedders.command import check_drift

    spec = await registry.get_model(store, args.id)
    same, stored, current = await check_drift(spec)
    verdict = "unchanged" if same else "DRIFTED: the provider now serves a different vector space"
    if not args.json:
        print(f"model {spec.id}: {verdict}\n  stored:  {stored}\n  current: {current}")
    return {"id": spec.id, "unchanged": same, "stored": stored, "current": current}


async def _embed(args: argparse.Namespace, store: StateStore, client: AsyncQdrantClient) -> Any:
    from switchyard.proxy.embedders.command import embed_report

    spec = await registry.get_model(store, args.id)
    report = await embed_report(spec, args.texts)
    if not args.json:
        for key, value in report.items():
            print(f"{key}: {value}")
    return report


async def _bind(args: argparse.Namespace, store: StateStore, client: AsyncQdrantClient) -> Any:
    binding = Binding(args.collection, args.model, args.enforce, args.vector)
    env = await registry.bind(store, client, binding)
    if not args.json:
        print(f"bound {binding.collection} -> {binding.model_id} ({binding.mode}), revision {env.rev}; "
              "payload indexes on embedding_model_id and embedding_version created")
    return binding.to_dict()


async def _unbind(args: argparse.Namespace, store: StateStore, client: AsyncQdrantClient) -> Any:
    await registry.unbind(store, args.collection)
    if not args.json:
        print(f"unbound {args.collection}")
    return {"collection": args.collection, "unbound": True}
