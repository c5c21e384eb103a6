"""``switchyard.alembic``: an SQLite + Alembic project whose one revision adds a table and a
Qdrant named vector; ``alembic upgrade head`` and ``alembic downgrade base`` (real Alembic
subprocesses, through a real proxy) leave both schemas as expected."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from qdrant_client import QdrantClient, models

sys.path.insert(0, os.path.dirname(__file__))
from schema_fixtures import Chain, chain, stack  # noqa: E402,F401

ENV_PY = '''
from alembic import context
from sqlalchemy import engine_from_config, pool

import switchyard.alembic  # registers op.qdrant_upgrade / op.qdrant_downgrade

config = context.config
engine = engine_from_config(config.get_section(config.config_ini_section), prefix="sqlalchemy.",
                            poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
'''

REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "a1"
down_revision = None


def upgrade():
    op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text))
    op.qdrant_upgrade("q1")


def downgrade():
    op.qdrant_downgrade("base")
    op.drop_table("notes")
'''


def _project(root: Path, chain: Chain) -> Path:
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / "migrations" / "script.py.mako").write_text("")
    (root / "migrations" / "versions" / "a1_notes.py").write_text(REVISION)
    (root / "alembic.ini").write_text(textwrap.dedent(f"""
        [alembic]
        script_location = migrations
        sqlalchemy.url = sqlite:///{root / 'app.db'}
        switchyard.url = {chain.stack.proxy_url}
        switchyard.revisions = {chain.folder}
        switchyard.chain = {chain.name}
    """))
    return root


def _alembic(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_SCHEMA")}
    return subprocess.run([sys.executable, "-m", "alembic", "-c", str(root / "alembic.ini"), *args],
                          capture_output=True, text=True, timeout=300, cwd=root, env=env)


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}


def test_alembic_upgrade_and_downgrade_change_sql_and_qdrant_together(chain: Chain, tmp_path: Path) -> None:
    name = chain.prefix + "notes"
    qdrant = QdrantClient(url=chain.stack.upstream_url, check_compatibility=False)
    qdrant.create_collection(name, vectors_config={"text": models.VectorParams(size=4, distance=models.Distance.COSINE)})
    qdrant.upsert(name, [models.PointStruct(id=1, vector={"text": [1, 0, 0, 0]}, payload={"n": 1})], wait=True)
    chain.write("q1", None, f'op.add_named_vector({name!r}, "summary", size=4, distance="Dot")',
                f'op.drop_named_vector({name!r}, "summary")')
    root = _project(tmp_path / "app", chain)

    up = _alembic(root, "upgrade", "head")
    assert up.returncode == 0, up.stdout + up.stderr
    assert {"notes", "alembic_version"} <= _tables(root / "app.db")
    vectors = qdrant.get_collection(name).config.params.vectors
    assert isinstance(vectors, dict) and set(vectors) == {"text", "summary"}
    assert chain.status()["revision"] == "q1"

    down = _alembic(root, "downgrade", "base")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "notes" not in _tables(root / "app.db")
    vectors = qdrant.get_collection(name).config.params.vectors
    assert isinstance(vectors, dict) and set(vectors) == {"text"}
    assert chain.status()["revision"] is None
    assert qdrant.retrieve(name, [1], with_vectors=True)[0].vector == {"text": [1.0, 0.0, 0.0, 0.0]}
