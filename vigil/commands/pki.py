"""`vigil pki …`: the project CA, broker and client certificates, and the CRL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from infra.pki import Pki, PkiError, Role, check_identity

app = typer.Typer(
    help="Certificates: the project CA, broker and client identities, CRL.", no_args_is_help=True
)
console = Console()

PkiDir = Annotated[Path, typer.Option("--dir", help="The PKI directory.")]
IfAbsent = Annotated[
    bool,
    typer.Option(
        "--if-absent", help="Do nothing if the identity already has a certificate (bootstrap)."
    ),
]
DEFAULT_DIR = Path("var/pki")


def _fail(exc: PkiError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@app.command("init")
def pki_init(
    directory: PkiDir = DEFAULT_DIR,
    name: Annotated[str, typer.Option(help="The CA's common name.")] = "vigil project CA",
) -> None:
    """Create the project CA (once) and an empty CRL."""
    pki = Pki(directory)
    created = pki.init(name)
    state = "created" if created else "already exists"
    console.print(f"CA {state}: {directory / 'ca.crt'} (key ca.key: keep it offline)")
    console.print(f"confirmation master secret: {pki.confirm_master_path} (for ingest only)")


@app.command("server")
def pki_server(
    cn: Annotated[str, typer.Argument(help="The broker's name, e.g. broker.")],
    hosts: Annotated[list[str], typer.Option("--host", help="DNS name or IP the clients use.")],
    directory: PkiDir = DEFAULT_DIR,
    if_absent: IfAbsent = False,
) -> None:
    """Issue a broker (TLS server) certificate."""
    pki = Pki(directory)
    if if_absent and pki.cert_path(cn).exists():
        console.print(f"{cn}: a certificate exists already, kept: {pki.cert_path(cn)}")
        return
    try:
        issued = pki.issue_server(cn, hosts)
    except PkiError as exc:
        raise _fail(exc) from None
    console.print(f"issued {issued.cn} (serial {issued.serial:x}, until {issued.not_after})")


@app.command("client")
def pki_client(
    cns: Annotated[
        list[str],
        typer.Argument(help="Identities of one role: gateway ids, device ids or vigil-<svc>."),
    ],
    role: Annotated[Role, typer.Option(help="What the identities are.")],
    directory: PkiDir = DEFAULT_DIR,
    if_absent: IfAbsent = False,
) -> None:
    """Issue client certificates whose common name is the broker identity.

    A gateway also gets ``issued/<id>.confirm-key``, its confirmation MAC key. Every name is
    checked before any certificate is issued.
    """
    pki = Pki(directory)
    try:
        for cn in cns:
            check_identity(cn, role)
        for cn in cns:
            _issue_client(pki, cn, role, if_absent)
    except PkiError as exc:
        raise _fail(exc) from None


def _issue_client(pki: Pki, cn: str, role: Role, if_absent: bool) -> None:
    """Issue one client certificate (and a gateway's confirmation key), saying what was done."""
    if if_absent and pki.cert_path(cn).exists():
        console.print(f"{cn}: a certificate exists already, kept: {pki.cert_path(cn)}")
        if role is Role.GATEWAY and not pki.confirm_key_path(cn).exists():
            console.print(f"confirmation key: {pki.write_confirm_key(cn)}")
        return
    issued = pki.issue_client(cn, role)
    console.print(
        f"issued {issued.cn} as {issued.role}: {pki.cert_path(cn)} + {pki.key_path(cn)} "
        f"(until {issued.not_after})"
    )
    if role is Role.GATEWAY:
        console.print(f"confirmation key: {pki.confirm_key_path(cn)}")


@app.command("revoke")
def pki_revoke(
    cn: Annotated[str, typer.Argument(help="The identity to revoke.")],
    directory: PkiDir = DEFAULT_DIR,
) -> None:
    """Revoke an identity's certificate and re-sign the CRL (then restart the broker)."""
    try:
        Pki(directory).revoke(cn)
    except PkiError as exc:
        raise _fail(exc) from None
    console.print(
        f"revoked {cn}; CRL re-signed at {directory / 'crl.pem'}. Mosquitto reads the CRL when "
        "its listener starts: restart the broker for the revocation to take effect."
    )


@app.command("list")
def pki_list(directory: PkiDir = DEFAULT_DIR) -> None:
    """Every certificate issued, with its state."""
    table = Table("identity", "role", "serial", "valid until", "revoked")
    for item in Pki(directory).issued():
        table.add_row(item.cn, item.role, f"{item.serial:x}", item.not_after, item.revoked_at or "")
    console.print(table)
