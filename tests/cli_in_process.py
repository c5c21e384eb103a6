"""``switchyard ...`` run in the test's own process (a subprocess per CLI call costs seconds of
interpreter start): exit status, stdout and stderr, from a worker thread so the test's event loop
keeps serving what the command talks to."""

from __future__ import annotations

import asyncio
import contextlib
import io

from switchyard.proxy import cli as switchyard_cli


async def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                return switchyard_cli.main(list(argv))
            except SystemExit as exc:
                return int(exc.code or 0)
    code = await asyncio.to_thread(run)
    return code, out.getvalue(), err.getvalue()
