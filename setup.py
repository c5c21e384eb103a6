"""Package layout (the rest of the metadata is in pyproject.toml).

The folders ``proxy/`` and ``backfill/`` stay at the top of the repository but install as
``switchyard.proxy`` and ``switchyard.backfill``: ``switchyard`` (a namespace package) is the only
top-level name the wheel claims, so nothing collides with other distributions that install a
``proxy`` or ``backfill`` module. pyproject.toml cannot prefix found packages, hence this file.
"""

from setuptools import find_packages, setup

#: installed name under ``switchyard.`` -> folder. ``switchyard_alembic/`` is not named
#: ``alembic/``: a folder of that name at the repository root would shadow the real Alembic.
FOLDERS = {"proxy": "proxy", "backfill": "backfill", "alembic": "switchyard_alembic"}


def _packages() -> list[str]:
    found = []
    for name, folder in FOLDERS.items():
        for pkg in find_packages(include=[folder, f"{folder}.*"]):
            found.append(f"switchyard.{name}{pkg[len(folder):]}")
    return found


setup(
    packages=_packages(),
    package_dir={f"switchyard.{name}": folder for name, folder in FOLDERS.items()},
)
