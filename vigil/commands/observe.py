"""What every `run` command shares to be observable: its metrics endpoint and start-up lines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import typer
from prometheus_client import CollectorRegistry

from infra.logs import started
from infra.metrics import serve


def metrics_port_option(setting: str) -> Any:
    """The ``--metrics-port`` option of a run command whose setting is ``[metrics] setting``."""
    return typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help=f"Serve Prometheus metrics at http://<metrics.host>:PORT/metrics "
        f"[default: metrics.{setting}; unset: off].",
    )


def chosen_port(option: int | None, setting: int | None) -> int | None:
    """The command-line port if given, else the settings' (None: no endpoint)."""
    return setting if option is None else option


@contextlib.contextmanager
def metrics_endpoint(
    component: str, registry: CollectorRegistry, port: int | None, host: str
) -> Iterator[None]:
    """Serve ``registry`` on ``host:port`` while the block runs (nothing if ``port`` is None)."""
    if port is None:
        yield
        return
    try:
        server = serve(registry, port, host)
    except OSError as exc:
        typer.echo(f"vigil {component}: cannot serve metrics on {host}:{port}: {exc}", err=True)
        raise typer.Exit(2) from None
    started(component, "serving metrics", url=f"http://{host}:{server.port}/metrics")
    try:
        yield
    finally:
        server.close()
