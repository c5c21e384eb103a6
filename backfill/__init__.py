"""The backfill: re-embeds a migration's source into its target (see docs/backfill.md)."""
