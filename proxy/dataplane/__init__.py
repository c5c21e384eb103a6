"""The data plane during a migration: mirrored writes and merged reads."""
