"""`vigil demo --serve`: the API and web console over the demo's SQLite files, with demo logins.

Nothing to install: the stores are the files the demo just wrote, the tokens are minted into
a registry beside them (one per role, printed once), and uvicorn serves on loopback until
Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from service.tokens import TokenRegistry

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


def serve_console(workdir: Path, site: str, host: str, port: int, console: Console) -> None:
    """Serve the API and console over the demo's stores until interrupted."""
    import uvicorn

    from service.api import ApiSettings, create_app

    workdir = workdir.resolve()
    logins = mint_demo_logins(workdir, site)
    settings = ApiSettings(
        store_url=f"sqlite:///{workdir / 'service.db'}",
        tokens_file=workdir / "tokens.json",
        readings_url=f"sqlite:///{workdir / 'vigil.db'}",
        allowed_hosts=[host, "localhost", "127.0.0.1"],
    )
    app = create_app(settings)
    console.print(f"\n[bold]Console:[/bold] {console_url(host, port)}  (Ctrl-C stops it)")
    console.print("Demo logins (paste the token on the login page):")
    for name, token in logins:
        console.print(f"  {name:26} {token}", soft_wrap=True)  # a token must stay one line
    uvicorn.run(app, host=host, port=port, log_level="warning")
