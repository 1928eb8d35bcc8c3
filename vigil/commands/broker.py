"""`vigil broker config`: Mosquitto configuration and ACL files with TLS and identities."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from infra.pki import Pki
from vigil.broker_config import BrokerOptions, ListenerFiles, broker_config, site_acl, uplink_acl

app = typer.Typer(help="Broker configuration.", no_args_is_help=True)
console = Console()


class BrokerKind(StrEnum):
    """Which broker the files are for."""

    UPLINK = "uplink"
    SITE = "site"


@app.command("config")
def broker_config_command(
    kind: Annotated[BrokerKind, typer.Option(help="uplink (central) or site (a ward's).")],
    out: Annotated[Path, typer.Option(help="Directory to write mosquitto.conf and acl to.")],
    pki_dir: Annotated[Path, typer.Option(help="The PKI directory.")] = Path("var/pki"),
    cert_name: Annotated[str, typer.Option(help="The broker certificate's name.")] = "broker",
    files_at: Annotated[
        Path | None,
        typer.Option(help="Where the broker will find the PKI files (e.g. in a container)."),
    ] = None,
    config_at: Annotated[
        Path | None,
        typer.Option(help="Where the broker will find mosquitto.conf and acl (default: --out)."),
    ] = None,
    port: Annotated[int, typer.Option(help="TLS listener port.")] = 8883,
    bind: Annotated[str, typer.Option(help="Listen address.")] = "0.0.0.0",
    data_dir: Annotated[Path, typer.Option(help="Persistence directory.")] = Path(
        "/mosquitto/data"
    ),
    site: Annotated[str, typer.Option(help="Site id (site broker only).")] = "site-a",
    gateway: Annotated[
        list[str] | None, typer.Option(help="Gateway ids bridging this site (site broker).")
    ] = None,
) -> None:
    """Write mosquitto.conf (TLS 1.2+, client certificates, no anonymous access) and the ACL."""
    pki = Pki(pki_dir)
    if not pki.cert_path(cert_name).exists():
        console.print(
            f"[red]error:[/red] no certificate {cert_name!r} in {pki_dir}: run "
            f"`vigil pki init` and `vigil pki server {cert_name} --host …` first"
        )
        raise typer.Exit(2)
    base = files_at or pki_dir
    files = ListenerFiles(
        ca=base / "ca.crt",
        cert=base / "issued" / f"{cert_name}.crt",
        key=base / "issued" / f"{cert_name}.key",
        crl=base / "crl.pem",
    )
    out.mkdir(parents=True, exist_ok=True)
    acl_path = out / "acl"
    acl = uplink_acl() if kind is BrokerKind.UPLINK else site_acl(site, gateway or [])
    acl_path.write_text(acl)
    acl_in_broker = (config_at or out) / "acl"
    options = BrokerOptions(port=port, bind=bind, persistence_dir=data_dir)
    (out / "mosquitto.conf").write_text(broker_config(files, acl_in_broker, options))
    console.print(f"wrote {out / 'mosquitto.conf'} and {acl_path}")
