"""Start-up checks of the files a process needs: one clear line and exit 2, not a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from infra.confirm_keys import KeyFileError
from infra.mqtt_tls import TlsFilesError

# Errors a process can only fix by its configuration; the installed base's is added by ingest.
STARTUP_ERRORS: tuple[type[ValueError], ...] = (TlsFilesError, KeyFileError)


@contextlib.contextmanager
def startup_files(command: str, *more: type[ValueError]) -> Iterator[None]:
    """Turn a missing or unusable TLS, key (or ``more``) file into ``vigil <command>: why``."""
    try:
        yield
    except (*STARTUP_ERRORS, *more) as exc:
        typer.echo(f"vigil {command}: {exc}", err=True)
        raise typer.Exit(2) from None
