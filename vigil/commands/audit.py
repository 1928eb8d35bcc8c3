"""`vigil audit …`: verify the audit chain, sign checkpoints of it, and make the signing key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from service.checkpoint import Checkpoint
    from service.store import ServiceStore

app = typer.Typer(help="The tamper-evident service audit log.", no_args_is_help=True)
console = Console()

StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url", help="sqlite:///path or postgresql://… [default: service.store_url]."
    ),
]
KeyFile = Annotated[
    Path | None,
    typer.Option("--key", help="Ed25519 signing key (PEM) [default: service.audit_key_file]."),
]


def _open(store_url: str | None) -> ServiceStore:
    """The service store, refusing a SQLite path that does not exist (a typo, not an empty log)."""
    from infra.urls import parse_store_url
    from service.store import open_service_store
    from vigil.settings import VigilSettings

    url = store_url or VigilSettings().service.store_url
    try:
        scheme, target = parse_store_url(url)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if scheme == "sqlite" and target != ":memory:" and not Path(target).exists():
        console.print(f"[red]error:[/red] no service store at {target}")
        raise typer.Exit(2)
    return open_service_store(url)


def _key_path(key: Path | None) -> Path:
    from vigil.settings import VigilSettings

    path = key or VigilSettings().service.audit_key_file
    if path is None:
        console.print("[red]error:[/red] no signing key: pass --key or set service.audit_key_file")
        raise typer.Exit(2)
    return path


@app.command("keygen")
def audit_keygen(key: KeyFile = None) -> None:
    """Create the Ed25519 audit signing key (0600) and print where its public half is."""
    from service.checkpoint import generate_key, public_pem

    path = _key_path(key)
    if path.exists():
        console.print(f"[red]error:[/red] {path} exists; refusing to replace a signing key")
        raise typer.Exit(2)
    public = path.with_suffix(".pub")
    public.write_bytes(public_pem(generate_key(path)))
    console.print(f"signing key {path} (keep it off the database host); public key {public}")


@app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[Path, typer.Option(help="Append the signed checkpoint (a JSON line) here.")],
    store_url: StoreUrl = None,
    key: KeyFile = None,
) -> None:
    """Sign the chain's current head and append the checkpoint to a file."""
    from service.checkpoint import CheckpointError, load_key, sign_checkpoint

    try:
        signing = load_key(_key_path(key))
    except CheckpointError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    store = _open(store_url)
    try:
        head = store.audit_head()  # one row, however long the log
    finally:
        store.close()
    if head is None:
        console.print("[red]error:[/red] the audit log is empty: nothing to sign")
        raise typer.Exit(2)
    checkpoint = sign_checkpoint(signing, head, datetime.now(UTC))
    with out.open("a", encoding="utf-8") as sink:
        sink.write(checkpoint.to_json() + "\n")
    console.print(f"checkpoint at row {checkpoint.seq}, head {checkpoint.head}, appended to {out}")


@app.command("verify")
def audit_verify(
    store_url: StoreUrl = None,
    expected_head: Annotated[
        str | None, typer.Option(help="Head hash remembered elsewhere (e.g. in a report).")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="File of signed checkpoints (JSON lines) to verify the log against."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(help="The signing key's public half [default: the signing key]."),
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Only the rows after the latest checkpoint of --checkpoint (and the tickets "
            "written since); run a full verification now and then.",
        ),
    ] = False,
) -> None:
    """Verify every row and every ticket; exit 1 naming each tampered, missing or forged row.

    The log is read in chunks, so memory stays flat however long it is.
    """
    from service.audit_stream import verify_store

    if incremental and checkpoint is None:
        console.print("[red]error:[/red] --incremental needs --checkpoint FILE")
        raise typer.Exit(2)
    public, checkpoints = _checkpoints(checkpoint, public_key) if checkpoint else (None, [])
    since = max(checkpoints, key=lambda cp: cp.seq) if incremental else None
    store = _open(store_url)
    try:
        result = verify_store(
            store,
            expected_head=expected_head,
            checkpoints=[since] if since is not None else checkpoints,
            public=public,
            since=since,
        )
    finally:
        store.close()
    if result.ok:
        where = "" if since is None else f" after checkpoint row {since.seq}"
        console.print(
            f"audit log intact{where}: {result.rows} rows, {result.tickets} tickets, "
            f"head {result.head or '-'}",
            markup=False,
        )
        return
    for problem in result.problems:
        console.print(
            f"row seq={problem.seq} (position {problem.index}): {problem.reason}",
            style="red",
            markup=False,
        )
    raise typer.Exit(1)


def _checkpoints(path: Path, public_key: Path | None) -> tuple[Ed25519PublicKey, list[Checkpoint]]:
    """The verification key and every checkpoint in ``path`` (each signature checked)."""
    from service.checkpoint import CheckpointError, load_public, parse_checkpoint

    try:
        public = load_public(public_key or _key_path(None))
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        checkpoints = [parse_checkpoint(line, public) for line in lines]
    except (CheckpointError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not checkpoints:
        console.print(f"[red]error:[/red] no checkpoint in {path}")
        raise typer.Exit(2)
    return public, checkpoints
