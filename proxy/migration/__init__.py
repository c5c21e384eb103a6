"""The migration control plane: record, phases and guards, routing, planning, service, heartbeats, hooks.

Pure decisions live in :mod:`record`, :mod:`phases`, :mod:`routing` and :mod:`planner` (tested as
tables); :mod:`service` (on :mod:`verify_steps` and :mod:`commits`, its compare-and-set writes),
:mod:`heartbeats` and :mod:`hooks` do the I/O. See ``docs/migrations.md``.
"""
