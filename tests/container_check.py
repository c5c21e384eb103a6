"""Checks of ``docker-compose.yml`` and the ``Dockerfile`` against the code (no Docker engine).

Used by ``tests/test_containers.py``. Two kinds of finding, each a readable line:

- **variables**: a ``SWITCHYARD_*`` variable that nothing reads (for a proxy service: that is
  not a config option), a ``*_FILE`` variable whose file is not a secret mounted into that
  service, a proxy whose config does not load, does not listen on every interface (a container's
  published port would reach nothing) or whose gRPC upstream is not the REST upstream's host
  (the old file sent gRPC calls to the proxy itself).
- **extras**: a command whose code needs a distribution the image does not install. What a
  command needs is derived from the code: the module that handles the subcommand, then every
  module of ours it imports (statically, in functions too, and through
  ``importlib.import_module("...")`` literals), then the third-party distributions of those
  imports; a command that reaches the local model presets (``switchyard.proxy.embedders.local_models``)
  can load any ``pkg:`` preset and so needs every preset's distribution, as does a ``pkg:NAME``
  written in the command itself. A name the code probes with ``find_spec("name")`` is
  optional (the code has a fallback) and not required.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import shlex
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from switchyard.proxy.config import INPUT_NAMES, env_name, load_config, parse_hostport
from switchyard.proxy.embedders.local_models import PRESETS
from switchyard.proxy.env_names import known_env_names

ROOT = Path(__file__).resolve().parents[1]
OUR_PACKAGES = ("proxy", "backfill")  # folders; installed as switchyard.proxy, switchyard.backfill
OUR_PREFIXES = tuple(f"switchyard.{p}" for p in OUR_PACKAGES)
PROXY_COMMANDS = ("proxy", "up")
CONFIG_ENV = frozenset({env_name(n) for n in INPUT_NAMES} | {"SWITCHYARD_CONFIG"})


# ---------------------------------------------------------------- Dockerfile

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions(text):
        if word != "ENV":
            continue
        parts = shlex.split(rest)
        if parts and "=" not in parts[0]:  # legacy ``ENV KEY value``
            env[parts[0]] = " ".join(parts[1:])
        else:
            for part in parts:
                key, _, value = part.partition("=")
                env[key] = value
    return env


def dockerfile_extras(text: str) -> set[str]:
    """The extras of every ``pip install '.[a,b]'`` of the project in a RUN line."""
    extras: set[str] = set()
    for word, rest in dockerfile_instructions(text):
        if word == "RUN" and "pip install" in rest:
            for match in re.finditer(r"(?:^|\s)['\"]?\.\[([\w,\s-]+)\]", rest):
                extras.update(e.strip() for e in match[1].split(","))
    return extras


def dockerfile_command(text: str) -> list[str]:
    """The image's default command (exec form ``CMD [...]`` or shell form)."""
    command: list[str] = []
    for word, rest in dockerfile_instructions(text):
        if word == "CMD":
            command = _exec_or_shell(rest)
    return command


def _exec_or_shell(rest: str) -> list[str]:
    import json

    try:
        parsed = json.loads(rest)
        return [str(p) for p in parsed] if isinstance(parsed, list) else shlex.split(rest)
    except ValueError:
        return shlex.split(rest)


# ---------------------------------------------------------------- what the image installs

def _requirement_name(req: str) -> tuple[str, set[str]]:
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", req)
    assert match, req
    return _norm(match[1]), {e.strip() for e in (match[2] or "").split(",") if e.strip()}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions(extras: Iterable[str], pyproject: Mapping[str, Any] | None = None) -> set[str]:
    """Distributions ``pip install '.[extras]'`` brings: the core ones plus each extra's,
    following self-references such as ``switchyard[local]`` (names normalised)."""
    project = (pyproject or tomllib.loads((ROOT / "pyproject.toml").read_text()))["project"]
    own = _norm(project["name"])
    optional = project.get("optional-dependencies", {})
    found: set[str] = set()
    todo = [(req, True) for req in project["dependencies"]] + [(f"{own}[{e}]", True) for e in extras]
    seen_extras: set[str] = set()
    while todo:
        req, _ = todo.pop()
        name, sub = _requirement_name(req.split(";")[0])
        if name == own:
            for extra in sub - seen_extras:
                if extra not in optional:
                    raise AssertionError(f"pyproject has no extra {extra!r}")
                seen_extras.add(extra)
                todo.extend((r, True) for r in optional[extra])
            continue
        found.add(name)
    return _with_dependencies(found)


def _with_dependencies(names: set[str]) -> set[str]:
    """``names`` plus what they require in turn (as installed here; their own extras left out)."""
    todo, found = list(names), set(names)
    while todo:
        try:
            requires = importlib.metadata.distribution(todo.pop()).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req.replace('extra=="', 'extra == "'):
                continue
            name = _requirement_name(req.split(";")[0])[0]
            if name not in found:
                found.add(name)
                todo.append(name)
    return found


# ---------------------------------------------------------------- what a command needs

def handler_modules(words: tuple[str, ...]) -> set[str]:
    """The modules whose code handles ``switchyard WORDS...`` (from the real parser).

    A group such as ``migrate`` with a nested command named (``migrate list``) is handled by that
    command's handler alone; a group named bare is handled by any of its commands'. A handler
    made by ``command_loading.deferred`` carries its target module's name."""
    import argparse

    from switchyard.proxy.cli import build_parser

    def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        return next((dict(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})

    top = subparsers(build_parser())
    if not words or words[0] not in top:
        raise AssertionError(f"switchyard has no command {words[:1]!r}")
    sub = top[words[0]]
    handler = sub.get_default("handler")
    if handler is not None:
        return {str(handler.__module__)}
    nested = subparsers(sub)
    chosen = [nested[words[1]]] if len(words) > 1 and words[1] in nested else list(nested.values())
    return {str(p.get_default("handler").__module__) for p in chosen}


def _is_our_module(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OUR_PREFIXES)


@functools.cache
def _module_file(name: str) -> Path | None:
    if not _is_our_module(name):
        return None
    base = ROOT.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def _probed_in(module: str) -> frozenset[str]:
    """Top-level names ``module`` probes with ``find_spec("name")``: optional, the code has a
    fallback when they are missing (e.g. the Edge engine)."""
    path = _module_file(module)
    assert path is not None, module
    probed = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "find_spec"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            probed.add(node.args[0].value.split(".")[0])
    return frozenset(probed)


@functools.cache
def _imports_of(module: str) -> tuple[set[str], set[str]]:
    """``(our modules, third-party top-level names)`` imported anywhere in ``module``."""
    path = _module_file(module)
    assert path is not None, module
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    constants: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    deferred = {id(node.args[0]) for node in ast.walk(tree)  # deferred("mod", "fn"): loads when run
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "deferred" and node.args}
    for node in ast.walk(tree):
        if id(node) in deferred:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
              in ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)  # importlib.import_module("onnxruntime")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            constants.add(node.value)  # e.g. INTERCEPTOR_MODULE = "switchyard.proxy.interception"
    ours = {n for n in names | constants
            if _is_our_module(n) and _module_file(n) is not None}
    distributions = _distributions()
    third = {t for t in (n.split(".")[0] for n in names)
             if t != "switchyard" and t not in sys.stdlib_module_names and t in distributions}
    return ours, third


def module_closure(start: str) -> set[str]:
    """Every module of ours reachable from ``start`` (parents included: importing a.b runs a)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if _module_file(".".join(parts[:i])))
        todo.extend(_imports_of(mod)[0] - seen)
    return seen


def needed_distributions(command: list[str]) -> dict[str, str]:
    """Distribution -> why, for one container command (``switchyard SUB ...`` or ``sh -c``)."""
    words = _switchyard_words(command)
    if not words:
        return {}
    modules = set().union(*(module_closure(m) for m in handler_modules(tuple(words[:2]))))
    distributions = _distributions()
    optional = set().union(*(_probed_in(mod) for mod in modules))
    needs: dict[str, str] = {}
    for mod in sorted(modules):
        for top in sorted(_imports_of(mod)[1] - optional):
            for dist in distributions[top]:
                needs.setdefault(_norm(dist), f"{mod} imports {top}")
    if "switchyard.proxy.embedders.local_models" in modules:
        for name, preset in PRESETS.items():
            needs.setdefault(_norm(preset.distribution), f"`switchyard {words[0]}` can load preset {name}")
    for word in words:
        if word in PRESETS:
            needs[_norm(PRESETS[word].distribution)] = f"the command names {word}"
    return needs


def _switchyard_words(command: list[str]) -> list[str]:
    """The words after ``switchyard`` (or ``python -m switchyard.proxy``), also inside ``sh -c '...'``."""
    if len(command) >= 3 and command[0] in ("sh", "bash", "/bin/sh") and command[1] == "-c":
        command = shlex.split(command[2])
    for i, word in enumerate(command):
        if word == "switchyard":
            return command[i + 1:]
        if word == "-m" and i + 1 < len(command) and command[i + 1] == "switchyard.proxy":
            return command[i + 2:]
    return []


# ---------------------------------------------------------------- compose

def compose_findings(compose: Mapping[str, Any], dockerfile: str) -> list[str]:
    """Every problem of the compose file's services that run our image (empty when fine)."""
    findings: list[str] = []
    image_env = dockerfile_env(dockerfile)
    declared_secrets = set((compose.get("secrets") or {}).keys())
    for var in sorted(v for v in image_env if v.startswith("SWITCHYARD_") and v not in CONFIG_ENV):
        findings.append(f"Dockerfile: ENV {var} is not a config option the proxy reads")
    for name, service in (compose.get("services") or {}).items():
        if not _is_ours(service):
            continue
        command = _service_command(service, dockerfile)
        words = _switchyard_words(command)
        env = {**image_env, **_service_env(service)}
        is_proxy = bool(words) and words[0] in PROXY_COMMANDS
        allowed = CONFIG_ENV if is_proxy else known_env_names()
        for var in sorted(v for v in _service_env(service) if v.startswith("SWITCHYARD_")):
            if var not in allowed:
                what = "a config option the proxy reads" if is_proxy else "a variable switchyard reads"
                findings.append(f"service {name}: {var} is not {what}")
        mounted = {_secret_name(s) for s in service.get("secrets") or ()}
        for var, value in sorted(env.items()):
            if var.startswith("SWITCHYARD_") and var.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                if value == secret or secret not in mounted or secret not in declared_secrets:
                    findings.append(f"service {name}: {var}={value} is not a secret mounted into it")
        if is_proxy:
            findings.extend(f"service {name}: {f}" for f in _proxy_config_findings(env))
        else:
            findings.extend(f"service {name}: {f}" for f in _tool_findings(compose, env, dockerfile))
    return findings


def _tool_findings(compose: Mapping[str, Any], env: Mapping[str, str], dockerfile: str) -> list[str]:
    """A command talking to a proxy service of this file reaches the state store through it only
    with that proxy's admin key (``proxy/intercept/reserved.py``)."""
    host = urlsplit(env.get("SWITCHYARD_URL", "")).hostname
    target = (compose.get("services") or {}).get(host or "")
    if target is None or not _is_ours(target):
        return []
    words = _switchyard_words(_service_command(target, dockerfile))
    target_env = {**dockerfile_env(dockerfile), **_service_env(target)}
    has_key = any(k in target_env for k in ("SWITCHYARD_ADMIN_KEY", "SWITCHYARD_ADMIN_KEY_FILE"))
    sends_key = any(k in env for k in ("SWITCHYARD_ADMIN_KEY", "SWITCHYARD_ADMIN_KEY_FILE"))
    if words and words[0] in PROXY_COMMANDS and has_key and not sends_key:
        return [f"talks to proxy {host}, which has an admin key, without SWITCHYARD_ADMIN_KEY(_FILE): "
                "the state store would refuse it"]
    return []


def _proxy_config_findings(env: Mapping[str, str]) -> list[str]:
    config_env = {k: v for k, v in env.items() if k in CONFIG_ENV and k != "SWITCHYARD_CONFIG"}
    try:
        config = load_config({}, config_env, None, read_file=lambda path: "a-key-from-a-file")
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        return [f"config does not load: {exc}"]
    findings = []
    for option in ("listen_rest", "listen_grpc"):
        host = parse_hostport(getattr(config, option))[0]
        if host not in ("0.0.0.0", "::"):
            findings.append(f"{option} is {getattr(config, option)}: a published port would reach nothing")
    rest_host = urlsplit(config.upstream_rest_url).hostname
    grpc_host = parse_hostport(config.upstream_grpc_address)[0]
    if rest_host != grpc_host:
        findings.append(f"gRPC upstream {config.upstream_grpc_address} is not on the REST upstream's "
                        f"host {rest_host}")
    return findings


def _is_ours(service: Mapping[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("switchyard")


def _service_command(service: Mapping[str, Any], dockerfile: str) -> list[str]:
    command = service.get("command")
    if command is None:
        return dockerfile_command(dockerfile)
    return [str(c) for c in command] if isinstance(command, list) else shlex.split(str(command))


def _service_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {str(item).partition("=")[0]: str(item).partition("=")[2] for item in env}
    return {str(k): str(v) for k, v in env.items()}


def _secret_name(entry: Any) -> str:
    return str(entry["source"]) if isinstance(entry, Mapping) else str(entry)


def extras_findings(compose: Mapping[str, Any], dockerfile: str) -> list[str]:
    """Commands (compose services of our image, the image's CMD) needing what is not installed."""
    installed = installed_distributions(dockerfile_extras(dockerfile))
    commands = [("Dockerfile CMD", dockerfile_command(dockerfile))]
    for name, service in (compose.get("services") or {}).items():
        if _is_ours(service):
            commands.append((f"service {name}", _service_command(service, dockerfile)))
    findings = []
    for where, command in commands:
        for dist, why in sorted(needed_distributions(command).items()):
            if dist not in installed:
                findings.append(f"{where}: needs {dist} ({why}), which the image does not install")
    return findings
