"""`vigil tokens …`: mint, list and revoke API tokens (stored hashed; shown once)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from service.tokens import TokenRegistry

app = typer.Typer(help="API tokens: mint (shown once), list, revoke.", no_args_is_help=True)
console = Console()

TokensFile = Annotated[
    Path | None,
    typer.Option("--file", help="The token file [default: service.tokens_file]."),
]


ROLES_HELP = "One of admin, engineer, hospital, patient."


def _registry(path: Path | None) -> TokenRegistry:
    # Imported here: argon2 is a server dependency, and `vigil --help` must run without it.
    from service.tokens import TokenRegistry
    from vigil.settings import VigilSettings

    return TokenRegistry(path or VigilSettings().service.tokens_file)


@app.command("add")
def tokens_add(
    role: Annotated[str, typer.Option(help=ROLES_HELP)],
    subject: Annotated[
        str | None, typer.Option(help="Engineer, site or patient id (not for admin).")
    ] = None,
    expires: Annotated[
        datetime | None, typer.Option(help="When the token stops working (ISO 8601, UTC).")
    ] = None,
    note: Annotated[str, typer.Option(help="Whose token this is, for the list.")] = "",
    file: TokensFile = None,
) -> None:
    """Mint a token; it is printed once and stored only as a hash."""
    from service.tokens import TokenError

    registry = _registry(file)
    if expires is not None and expires.tzinfo is None:
        expires = expires.astimezone()
    try:
        token, record = registry.mint(role, subject, expires, note)
    except TokenError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"token {record.id} for {record.role} {record.subject or ''} (shown once):")
    print(token)


@app.command("list")
def tokens_list(file: TokensFile = None) -> None:
    """Every token, without its secret."""
    table = Table("id", "role", "subject", "created", "expires", "revoked", "note")
    for r in _registry(file).records():
        table.add_row(
            r.id,
            r.role,
            r.subject or "",
            r.created_at[:19],
            (r.expires_at or "")[:19],
            (r.revoked_at or "")[:19],
            r.note,
        )
    console.print(table)


@app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (from `vigil tokens list`).")],
    file: TokensFile = None,
) -> None:
    """Revoke a token; a running API refuses it from its next request on."""
    from service.tokens import TokenError

    try:
        _registry(file).revoke(token_id)
    except TokenError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"revoked {token_id}")
