"""The work behind ``switchyard models ...``, ``bind`` and ``unbind`` (parsers:
:mod:`switchyard.proxy.registry_command`, which loads this module only when a command runs)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from qdrant_client import AsyncQdrantClient

from switchyard.proxy import registry
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore, tool_headers

Handler = Callable[[argparse.Namespace, StateStore, AsyncQdrantClient], Awaitable[Any]]


def run(name: str, args: argparse.Namespace) -> int:
    """Run the async handler ``name`` (e.g. ``_list``); exit status 1 when a drift check finds
    the model changed."""
    fn: Handler = _ACTIONS[name]

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
    from switchyard.proxy.embedders.report import check_drift

    spec = await registry.get_model(store, args.id)
    same, stored, current = await check_drift(spec)
    verdict = "unchanged" if same else "DRIFTED: the provider now serves a different vector space"
    if not args.json:
        print(f"model {spec.id}: {verdict}\n  stored:  {stored}\n  current: {current}")
    return {"id": spec.id, "unchanged": same, "stored": stored, "current": current}


async def _embed(args: argparse.Namespace, store: StateStore, client: AsyncQdrantClient) -> Any:
    from switchyard.proxy.embedders.report import embed_report

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


_ACTIONS: dict[str, Handler] = {
    "_register": _register, "_list": _list, "_show": _show, "_check": _check,
    "_embed": _embed, "_bind": _bind, "_unbind": _unbind,
}
