"""The backfill: re-embeds a migration's source into its target (see docs/backfill.md).

Installs as ``switchyard.backfill``; a top-level ``backfill`` import is refused (see
``switchyard.proxy``'s docstring).
"""

if __name__ != "switchyard.backfill":
    raise ImportError(f"import switchyard.backfill, not {__name__} (the folder installs as switchyard.backfill)")
