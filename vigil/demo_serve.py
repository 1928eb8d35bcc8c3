"""`vigil demo --serve`: the API and web console over the demo's SQLite files, with demo logins,
and the data path still running (vigil.demo_live) for a vendor's first `mosquitto_pub`.

Nothing to install: the stores are the files the demo just wrote, the tokens are minted into
a registry beside them (one per role, printed once), and uvicorn serves on loopback until
Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from rich.console import Console

from service.tokens import TokenRegistry
from vigil.demo_live import LiveSite, live_data_path

DEFAULT_HTTP_PORT = 8080
# (login name, role, subject): subjects of the demo's installed base (vigil.demo).
DEMO_LOGINS = (
    ("nurse", "hospital", None),  # the demo site, filled in from the fleet
    ("patient (infected wound)", "patient", "pt-0003"),
    ("engineer", "engineer", "eng-ana"),
    ("admin", "admin", None),
)


def console_url(host: str, port: int) -> str:
    """Where the console answers."""
    return f"http://{host}:{port}/console/"


def mint_demo_logins(workdir: Path, site: str) -> list[tuple[str, str]]:
    """A fresh token registry in ``workdir`` with one token per demo login: (name, token)."""
    path = workdir / "tokens.json"
    path.unlink(missing_ok=True)
    registry = TokenRegistry(path)
    made = []
    for name, role, subject in DEMO_LOGINS:
        who = site if role == "hospital" else subject
        token, _ = registry.mint(role, who, note=f"demo {name}")
        made.append((name, token))
    return made


def serve_console(workdir: Path, live: LiveSite, host: str, port: int, console: Console) -> None:
    """Serve the API and console over the demo's stores, with the data path live, until
    interrupted."""
    import uvicorn

    from service.api import ApiSettings, create_app

    workdir = workdir.resolve()
    logins = mint_demo_logins(workdir, live.site)
    settings = ApiSettings(
        store_url=f"sqlite:///{workdir / 'service.db'}",
        tokens_file=workdir / "tokens.json",
        readings_url=f"sqlite:///{workdir / 'vigil.db'}",
        allowed_hosts=[host, "localhost", "127.0.0.1"],
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    async def serve() -> None:
        async with live_data_path(workdir, live):
            console.print(f"\n[bold]Console:[/bold] {console_url(host, port)}  (Ctrl-C stops it)")
            console.print(
                f"Live: MQTT on 127.0.0.1:{live.broker_port}, site {live.site!r} — equipment"
                f" telemetry on site/{live.site}/equipment/<id>/telemetry (docs/integration.md)"
            )
            console.print("Demo logins (paste the token on the login page):")
            for name, token in logins:
                console.print(f"  {name:26} {token}", soft_wrap=True)  # one line per token
            await server.serve()

    # uvicorn re-raises the Ctrl-C it handled once it has shut down: that is the normal end.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
