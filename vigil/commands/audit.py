"""`vigil audit …`: check the service audit log's hash chain."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="The tamper-evident service audit log.", no_args_is_help=True)
console = Console()


@app.command("verify")
def audit_verify(
    store_url: Annotated[
        str,
        typer.Option(
            "--store-url", envvar="VIGIL_SERVICE_STORE_URL", help="sqlite:///path or postgresql://…"
        ),
    ] = "sqlite:///var/service.db",
    expected_head: Annotated[
        str | None, typer.Option(help="Head hash remembered elsewhere (e.g. in a report).")
    ] = None,
) -> None:
    """Verify every row; exit 1 naming each tampered, missing or misplaced row."""
    from service.audit import verify
    from service.store import open_service_store

    store = open_service_store(store_url)
    try:
        entries = store.audit_log()
    finally:
        store.close()
    result = verify(entries, expected_head)
    if result.ok:
        head = entries[-1].hash if entries else "-"
        console.print(f"audit log intact: {len(entries)} rows, head {head}")
        return
    for problem in result.problems:
        console.print(
            f"[red]row seq={problem.seq}[/red] (position {problem.index}): {problem.reason}"
        )
    raise typer.Exit(1)
