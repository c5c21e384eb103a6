"""Every ``SWITCHYARD_*`` environment variable the code reads, and the report of the others.

A misspelt variable used to be ignored silently (the container set-up set
``SWITCHYARD_REST_LISTEN``, which nothing reads, and the proxy listened elsewhere). Now
``switchyard`` reports each unknown ``SWITCHYARD_*`` variable at start-up, for every command,
with the closest known name::

    unknown environment variable SWITCHYARD_REST_LISTEN (did you mean SWITCHYARD_LISTEN_REST?)

The known names are the proxy's config options (``proxy/config.py``: each option and each key
file twin) plus :data:`OTHER_ENV`, the one registry of variables read elsewhere. Code that reads
a new ``SWITCHYARD_*`` variable adds it here (``tests/test_env_names.py`` greps the repository
and fails otherwise). It is a warning, not an error: a variable meant for another version of
Switchyard must not stop this one.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping

from switchyard.proxy.config import ENV_PREFIX, INPUT_NAMES, env_name

log = logging.getLogger("switchyard.config")

#: Variables that are not proxy config options, and who reads them.
OTHER_ENV: dict[str, str] = {
    "SWITCHYARD_CONFIG": "config file of `switchyard proxy` / `up`",
    "SWITCHYARD_URL": "proxy or Qdrant URL of the CLI, the backfill daemon and verify",
    "SWITCHYARD_API_KEY": "Qdrant API key of the CLI (models, bind), the backfill daemon and verify",
    "SWITCHYARD_API_KEY_FILE": "file holding SWITCHYARD_API_KEY",
    "SWITCHYARD_SCHEMA_REVISIONS": "revisions folder of `switchyard schema`",
    "SWITCHYARD_SCHEMA_CHAIN": "revision chain name of `switchyard schema` (default `default`)",
    "SWITCHYARD_SCHEMA_KILL_SEED": "tests: random seed of the schema SIGKILL test",
    "SWITCHYARD_TOKENIZER": "tokenizer file or directory of the local models",
    "SWITCHYARD_UPSTREAM_READERS": "reads served at once by `switchyard upstream`",
    "SWITCHYARD_UPSTREAM_ENGINE": "engine of the embedded upstream (`local` or `edge`)",
    "SWITCHYARD_UPSTREAM_IDLE_TIMEOUT": "seconds an idle or unfinished REST connection to "
                                        "`switchyard upstream` stays open (default 60)",
    "SWITCHYARD_UPSTREAM_SNAPSHOTS_PATH": "where the embedded upstream keeps collection snapshots "
                                          "(default <data path>/snapshots, or a temporary dir)",
    "SWITCHYARD_UPSTREAM_MAX_SNAPSHOT_UPLOAD": "largest snapshot upload to the embedded upstream, "
                                               "bytes (default 1 GiB)",
    "SWITCHYARD_UPSTREAM_STORAGE_SNAPSHOT": "full-storage snapshot `switchyard upstream` recovers "
                                            "at start (--storage-snapshot)",
    "SWITCHYARD_UPSTREAM_FORCE_SNAPSHOT": "lets that recovery overwrite collections and aliases "
                                          "(--force-snapshot)",
    "SWITCHYARD_BACKFILL_BATCH_SIZE": "`switchyard backfill --batch-size`",
    "SWITCHYARD_BACKFILL_CONCURRENCY": "`switchyard backfill --concurrency`",
    "SWITCHYARD_BACKFILL_TEXT_FETCHER": "`switchyard backfill --text-fetcher`",
    "SWITCHYARD_BACKFILL_LEASE_TTL": "`switchyard backfill --lease-ttl`",
    "SWITCHYARD_BACKFILL_OWNER": "`switchyard backfill --owner`",
    "SWITCHYARD_BACKFILL_PROGRESS_INTERVAL": "`switchyard backfill --progress-interval`",
    "SWITCHYARD_BACKFILL_RETRY_BASE": "`switchyard backfill --retry-base`",
    "SWITCHYARD_BACKFILL_RETRY_MAX": "`switchyard backfill --retry-max`",
    "SWITCHYARD_BACKFILL_HOT_RECHECK": "`switchyard backfill --hot-recheck`",
    "SWITCHYARD_BACKFILL_METRICS_PORT": "`switchyard backfill --metrics-port`",
    "SWITCHYARD_BACKFILL_METRICS_ADDR": "`switchyard backfill --metrics-addr`",
    "SWITCHYARD_BACKFILL_EXECUTOR": "`switchyard backfill --executor`",
    "SWITCHYARD_BACKFILL_ADDRESS": "`switchyard backfill --address`",
    "SWITCHYARD_BACKFILL_ACTORS": "`switchyard backfill --actors`",
    "SWITCHYARD_TEST_QDRANT_URL": "tests: run the suite against this Qdrant (REST)",
    "SWITCHYARD_TEST_QDRANT_GRPC": "tests: that Qdrant's gRPC HOST:PORT",
    "SWITCHYARD_TEST_NODE_CACHE": "tests: folder for the page tests' playwright-core (npm)",
    "SWITCHYARD_TEST_ARTIFACTS": "tests: folder for screenshots the page tests keep",
    "SWITCHYARD_QDRANT_OPENAPI": "tests: where Qdrant's openapi.json is",
    "SWITCHYARD_KILL_TEST_POINTS": "tests: points in the backfill kill test",
    "SWITCHYARD_KILL_TEST_KILLS": "tests: kills in the backfill kill test",
    "SWITCHYARD_TEST_NODE_CACHE": "tests: where the browser tests keep their Node.js tools",
    "SWITCHYARD_TEST_ARTIFACTS": "tests: where the status-page test writes its screenshots",
}


def known_env_names() -> frozenset[str]:
    """Config options (with key-file twins; ``SWITCHYARD_ADMIN_KEY`` also serves the CLI) and
    :data:`OTHER_ENV`."""
    return frozenset({env_name(name) for name in INPUT_NAMES} | set(OTHER_ENV))


def _words(name: str) -> list[str]:
    return name.removeprefix(ENV_PREFIX).split("_")


def suggestions(name: str, known: frozenset[str]) -> list[str]:
    """Likely meant names: same words in another order; else names extending it; else the closest."""
    words = _words(name)
    same_words = sorted(k for k in known if sorted(_words(k)) == sorted(words))
    if same_words:
        return same_words
    extending = sorted(k for k in known if _words(k)[:len(words)] == words)
    if extending:
        return extending[:3]
    return difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)


def unknown_env_messages(environ: Mapping[str, str]) -> list[str]:
    """One line per ``SWITCHYARD_*`` variable nothing reads (pure; names only, never values)."""
    known = known_env_names()
    lines = []
    for name in sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known):
        hint = suggestions(name, known)
        lines.append(f"unknown environment variable {name}"
                     + (f" (did you mean {' or '.join(hint)}?)" if hint else ""))
    return lines


def warn_unknown_env(environ: Mapping[str, str]) -> list[str]:
    """Log :func:`unknown_env_messages` as warnings; returns them."""
    lines = unknown_env_messages(environ)
    for line in lines:
        log.warning("%s", line)
    return lines
