"""Where a secret comes from: a value (flag, variable, config key) or a file holding it.

Every key option has a ``*_file`` twin (``--admin-key-file``, ``SWITCHYARD_ADMIN_KEY_FILE``,
config key ``admin_key_file``) read once at start-up. Files are the safe way to hand over a key:
a flag shows in ``ps`` to every user of the machine, a variable in ``/proc/PID/environ`` to the
same user and in ``docker inspect``, while a file can be mode 0600 or a mounted secret
(``/run/secrets/...``). The file's content is the key exactly, minus one trailing newline (what
``echo`` or an editor adds). An unreadable or empty file is a :class:`ConfigError` naming the
option and the path, never the content; an empty file is refused rather than read as "no key",
because no admin key means a different trust rule (loopback only), not a typo to pass silently.

:func:`choose_secret` is the rule for one level (value and file at once is an error); the
proxy's config loader applies it per level (flag > env > file), and
:func:`add_secret_argument` / :func:`resolve_secret_args` give the other commands (the CLI, the
backfill daemon, the embedded upstream) the same pair of flags plus their variables.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from switchyard.proxy.errors import ConfigError

ReadFile = Callable[[str], str]
FILE_SUFFIX = "_file"


def read_key_file(path: str) -> str:
    """The text of ``path`` (UTF-8). Raises :class:`OSError` or :class:`UnicodeError`."""
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def key_from_file(option: str, path: str, source: str, read_file: ReadFile = read_key_file) -> str:
    """The key in ``path`` minus one trailing newline; errors name ``option`` and ``path`` only."""
    where = f"{option} (from {source})"
    try:
        text = read_file(path)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read key file {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeError:
        raise ConfigError(f"{where}: key file {path} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    if not text:
        raise ConfigError(f"{where}: key file {path} is empty")
    return text


@dataclass(frozen=True, slots=True)
class Chosen:
    """A secret picked at one level: the raw value, where it came from, and whether from a file
    (a file's content is final; a value still goes through the option's parser)."""

    value: object
    source: str
    from_file: bool


def choose_secret(option: str, value: object, value_source: str, path: object, path_source: str,
                  read_file: ReadFile = read_key_file) -> Chosen | None:
    """One level's secret, or None when neither the value nor the file is given."""
    if value is not None and path is not None:
        raise ConfigError(f"{option}: give {value_source} or {path_source}, not both")
    if path is not None:
        return Chosen(key_from_file(option, str(path).strip(), path_source, read_file), path_source, True)
    if value is not None:
        return Chosen(value, value_source, False)
    return None


@dataclass(frozen=True, slots=True)
class SecretArg:
    """A key flag of a command: ``--api-key`` with its ``--api-key-file`` twin and variables."""

    dest: str
    flag: str
    env: str | None


def add_secret_argument(parser: argparse.ArgumentParser, flag: str, *, env: str | None = None,
                        help: str) -> None:
    """Add ``flag`` and ``flag-file`` (and, with ``env``, ``ENV`` / ``ENV_FILE``) to ``parser``.

    :func:`resolve_secret_args` (called by ``switchyard``'s main) then sets ``args.<dest>`` to the
    key: flag > flag file > variable > variable file."""
    dest = flag.lstrip("-").replace("-", "_")
    env_note = f" (env {env}; or {env}{FILE_SUFFIX.upper()})" if env else ""
    parser.add_argument(flag, dest=dest, default=None, metavar="KEY", help=help + env_note)
    parser.add_argument(flag + "-file", dest=dest + FILE_SUFFIX, default=None, metavar="FILE",
                        help=f"read {flag[2:]} from FILE (one trailing newline stripped); "
                             "unlike the flag it does not show in process listings")
    known = tuple(parser.get_default("_secret_args") or ())
    parser.set_defaults(_secret_args=(*known, SecretArg(dest, flag, env)))


def resolve_secret_args(args: argparse.Namespace, environ: Mapping[str, str],
                        read_file: ReadFile = read_key_file) -> None:
    """Replace each secret flag's value in ``args`` by the key from its flag, file or variable."""
    for spec in getattr(args, "_secret_args", ()) or ():
        chosen = choose_secret(spec.dest, getattr(args, spec.dest, None), f"flag {spec.flag}",
                               getattr(args, spec.dest + FILE_SUFFIX, None),
                               f"flag {spec.flag}-file", read_file)
        if chosen is not None:
            value = chosen.value if chosen.from_file else (str(chosen.value).strip() or None)
        else:
            value = env_secret(spec.env, environ, read_file, spec.dest) if spec.env else None
        setattr(args, spec.dest, value)


def env_secret(env: str, environ: Mapping[str, str], read_file: ReadFile = read_key_file,
               option: str | None = None) -> str | None:
    """The key in variable ``env`` or in the file ``env_FILE`` names (both set: an error);
    errors name ``option`` (default: the variable)."""
    file_env = env + FILE_SUFFIX.upper()
    chosen = choose_secret(option or env, environ.get(env), f"env {env}", environ.get(file_env),
                           f"env {file_env}", read_file)
    if chosen is None:
        return None
    return str(chosen.value) if chosen.from_file else (str(chosen.value).strip() or None)


def redact_url(url: str) -> str:
    """A URL safe to log: scheme and host only (webhook URLs carry tokens in the path, the query
    or the user-info), e.g. ``https://hooks.example.com/...``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    rest = "/..." if (parts.path not in ("", "/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{rest}"
