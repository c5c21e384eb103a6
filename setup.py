"""Package layout (the rest of the metadata is in pyproject.toml).

The folders ``proxy/`` and ``backfill/`` stay at the top of the repository but install as
``switchyard.proxy`` and ``switchyard.backfill``: ``switchyard`` (a namespace package) is the only
top-level name the wheel claims, so nothing collides with other distributions that install a
``proxy`` or ``backfill`` module. pyproject.toml cannot prefix found packages, hence this file.
"""

from setuptools import find_packages, setup

FOLDERS = ("proxy", "backfill")

setup(
    packages=[f"switchyard.{name}" for name in find_packages(include=[f"{f}*" for f in FOLDERS])],
    package_dir={f"switchyard.{folder}": folder for folder in FOLDERS},
)
