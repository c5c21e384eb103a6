"""The backfill daemon: re-embeds a migration's source collection into its target."""
