"""Alembic operations for Qdrant schemas: ``op.qdrant_upgrade(rev)`` / ``op.qdrant_downgrade(rev)``.

Importing ``switchyard.alembic`` (in an application's ``env.py`` or in a revision) registers
two operations on Alembic's ``op``:

- ``op.qdrant_upgrade(REV)``: ``switchyard schema upgrade REV`` (online, journaled, resumable);
- ``op.qdrant_downgrade(REV)``: ``switchyard schema downgrade REV`` (``"base"`` undoes all).

Each is the other's reverse (autogenerate and ``MigrateOperation.reverse``), so one Alembic
revision carries the matching SQL and Qdrant changes and ``alembic downgrade`` undoes both.
Where Switchyard is, in order: :func:`configure` (from ``env.py``), the ``alembic.ini`` options
``switchyard.url``, ``switchyard.revisions`` (relative to the ini file), ``switchyard.chain``,
then ``SWITCHYARD_URL`` / ``SWITCHYARD_SCHEMA_REVISIONS`` / ``SWITCHYARD_SCHEMA_CHAIN``; the
revisions folder defaults to ``qdrant_migrations/`` beside ``alembic.ini``. Needs the extra
``switchyard[alembic]``.

The folder is named ``switchyard_alembic`` (a folder ``alembic/`` at the repository root would
shadow the real Alembic) and installs as ``switchyard.alembic`` (setup.py); importing it under
another name is refused, like ``switchyard.proxy``.
"""

from __future__ import annotations

if __name__ != "switchyard.alembic":
    raise ImportError(f"import switchyard.alembic, not {__name__} (the folder installs as switchyard.alembic)")

import os
from pathlib import Path
from typing import Any

from alembic.operations import MigrateOperation, Operations

from switchyard.proxy.schema.api import Schema

_SETTINGS: dict[str, Any] = {}


def configure(url: str | None = None, revisions: str | Path | None = None, *,
              chain: str | None = None, api_key: str | None = None,
              admin_key: str | None = None) -> None:
    """Where the Qdrant operations go (call from ``env.py``; unset values fall back to the ini
    options and the environment)."""
    for key, value in (("url", url), ("revisions", revisions), ("chain", chain),
                       ("api_key", api_key), ("admin_key", admin_key)):
        if value is not None:
            _SETTINGS[key] = value


def schema_for(operations: Operations) -> Schema:
    """The :class:`Schema` an operation runs against, from :func:`configure`, the ini file or
    the environment."""
    cfg = getattr(getattr(operations, "migration_context", None), "config", None)
    ini = getattr(cfg, "config_file_name", None)
    base = Path(ini).resolve().parent if ini else Path.cwd()

    def opt(name: str, env: str) -> str | None:
        if name in _SETTINGS:
            return str(_SETTINGS[name])
        value = cfg.get_main_option(f"switchyard.{name}") if cfg is not None else None
        return value or os.environ.get(env)

    url = opt("url", "SWITCHYARD_URL") or "http://localhost:6333"
    folder = opt("revisions", "SWITCHYARD_SCHEMA_REVISIONS")
    revisions = (base / folder) if folder else base / "qdrant_migrations"
    return Schema(url, revisions, chain=opt("chain", "SWITCHYARD_SCHEMA_CHAIN") or "default",
                  api_key=_SETTINGS.get("api_key") or os.environ.get("SWITCHYARD_API_KEY"),
                  admin_key=_SETTINGS.get("admin_key") or os.environ.get("SWITCHYARD_ADMIN_KEY"),
                  say=print)


@Operations.register_operation("qdrant_upgrade")
class QdrantUpgradeOp(MigrateOperation):
    """``op.qdrant_upgrade(REV)``: bring the Qdrant schema up to REV."""

    def __init__(self, revision: str, downgrade_to: str | None = None) -> None:
        self.revision, self.downgrade_to = revision, downgrade_to

    @classmethod
    def qdrant_upgrade(cls, operations: Operations, revision: str = "head",
                       downgrade_to: str | None = None) -> Any:
        return operations.invoke(cls(revision, downgrade_to))

    def reverse(self) -> MigrateOperation:
        return QdrantDowngradeOp(self.downgrade_to or "base", self.revision)


@Operations.register_operation("qdrant_downgrade")
class QdrantDowngradeOp(MigrateOperation):
    """``op.qdrant_downgrade(REV)``: bring the Qdrant schema back to REV (``base``: none)."""

    def __init__(self, revision: str, upgrade_to: str | None = None) -> None:
        self.revision, self.upgrade_to = revision, upgrade_to

    @classmethod
    def qdrant_downgrade(cls, operations: Operations, revision: str,
                         upgrade_to: str | None = None) -> Any:
        return operations.invoke(cls(revision, upgrade_to))

    def reverse(self) -> MigrateOperation:
        return QdrantUpgradeOp(self.upgrade_to or "head", self.revision)


@Operations.implementation_for(QdrantUpgradeOp)
def _upgrade(operations: Operations, operation: QdrantUpgradeOp) -> None:
    schema_for(operations).upgrade_sync(operation.revision)


@Operations.implementation_for(QdrantDowngradeOp)
def _downgrade(operations: Operations, operation: QdrantDowngradeOp) -> None:
    schema_for(operations).downgrade_sync(operation.revision)


__all__ = ["QdrantDowngradeOp", "QdrantUpgradeOp", "configure", "schema_for"]
