"""Shared state: the ``_switchyard`` collection (store), typed records, and the proxies' cached snapshot."""
