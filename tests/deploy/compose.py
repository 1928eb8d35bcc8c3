"""docker-compose.yml as the tests read it: services, their mounts, and the same processes
rewritten for this machine (no Docker engine runs here)."""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
HEALTHCHECK_SCRIPT = ROOT / "deploy" / "healthcheck.py"


def compose() -> dict[str, Any]:
    """The parsed compose file (YAML merge keys resolved)."""
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return doc


def services() -> dict[str, dict[str, Any]]:
    """Every service by name."""
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def vigil_services() -> dict[str, dict[str, Any]]:
    """The services that run the image built from ./Dockerfile."""
    return {name: s for name, s in services().items() if "build" in s}


@dataclass(frozen=True)
class Mount:
    """One `volumes:` entry: a named volume or a ./bind source, where, read-only or not."""

    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        """A file or directory of the repository rather than a named volume."""
        return self.source.startswith("./")


def mounts(service: dict[str, Any]) -> list[Mount]:
    """A service's mounts (short syntax)."""
    found = []
    for entry in service.get("volumes", []):
        source, target, *mode = str(entry).split(":")
        found.append(Mount(source, target, mode == ["ro"]))
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, every value a string as the container sees it."""
    return {key: str(value) for key, value in service.get("environment", {}).items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """What a service waits for: {service: condition}."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: str(spec.get("condition", "service_started")) for name, spec in deps.items()}


def start_order() -> list[str]:
    """Services in an order that starts each after what it depends on (as compose does)."""
    pending, order = dict(services()), []
    while pending:
        ready = [n for n, s in pending.items() if set(depends_on(s)) <= set(order)]
        assert ready, f"a depends_on cycle among {sorted(pending)}"
        order += sorted(ready)
        for name in ready:
            del pending[name]
    return order


def script_commands(script: str) -> list[list[str]]:
    """The `vigil …` command lines of the bootstrap's shell script."""
    joined = script.replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip().startswith("vigil ")]


@dataclass
class Host:
    """Where this machine's processes find what compose gives each container.

    ``volumes``: named volume → directory; ``hosts``: service name → address to dial;
    ``ports``: container port → port on this machine; ``database_url``: what the compose
    PostgreSQL URLs become.
    """

    volumes: dict[str, Path]
    hosts: dict[str, str]
    ports: dict[int, int]
    database_url: str
    replaced: dict[str, str] = field(default_factory=dict)  # literal rewrites, e.g. a uid

    def path(self, service: dict[str, Any], path: str) -> str:
        """``path`` in the container → the same file here, through the service's mounts."""
        best: Mount | None = None
        for mount in mounts(service):
            if (path == mount.target or path.startswith(mount.target + "/")) and (
                best is None or len(mount.target) > len(best.target)
            ):
                best = mount
        if best is None:
            return path
        base = ROOT / best.source if best.is_bind else self.volumes[best.source]
        return str(base) + path[len(best.target) :]

    def value(self, service: dict[str, Any], key: str, value: str) -> str:
        """An environment value or argument as this machine needs it."""
        if value.startswith("postgresql://"):
            return self.database_url
        if key.endswith("__HOST") or key == "--host":
            return self.hosts.get(value, "127.0.0.1" if value == "0.0.0.0" else value)
        if key.endswith("_PORT") or key == "--port":
            return str(self.ports.get(int(value), value))
        if value.startswith("/"):
            return self.path(service, value)
        return value

    def environment(self, service: dict[str, Any]) -> dict[str, str]:
        """The service's environment, rewritten."""
        return {k: self.value(service, k, v) for k, v in environment(service).items()}

    def command(self, service: dict[str, Any]) -> list[str]:
        """The service's command, option values rewritten."""
        args = [str(a) for a in service["command"]]
        return [
            args[0],
            *(self.value(service, prev, a) for prev, a in itertools.pairwise(args)),
        ]

    def script(self, service: dict[str, Any]) -> str:
        """A shell script of the service with every mounted path and literal rewritten."""
        text = str(service["command"][0])
        for mount in sorted(mounts(service), key=lambda m: -len(m.target)):
            text = re.sub(
                rf"(?<![\w/]){re.escape(mount.target)}(?=[/\s]|$)",
                self.path(service, mount.target),
                text,
            )
        for old, new in self.replaced.items():
            text = text.replace(old, new)
        return text

    def healthcheck(self, service: dict[str, Any], pid: int | None) -> list[str]:
        """The service's healthcheck command, runnable here (``pid``: its process)."""
        test = [str(a) for a in service["healthcheck"]["test"]]
        assert test[0] == "CMD", test
        argv = test[1:]
        if argv[0] == "vigil-healthcheck":
            argv = ["python", str(HEALTHCHECK_SCRIPT), *argv[1:]]
            if argv[2] == "connected":
                argv = [*argv[:3], *(str(self.ports[int(p)]) for p in argv[3:]), "--pid", str(pid)]
            else:
                argv[3] = self.url(argv[3])
            return argv
        out = [argv[0]]
        for prev, arg in itertools.pairwise(argv):
            if prev == "-h":
                out.append(self.hosts.get(arg, arg))
            elif prev == "-p":
                out.append(str(self.ports[int(arg)]))
            else:
                out.append(self.path(service, arg) if arg.startswith("/") else arg)
        return out

    def url(self, url: str) -> str:
        """An http URL inside a container → the published port here."""
        parts = urlsplit(url)
        assert parts.port is not None, url
        return url.replace(f":{parts.port}", f":{self.ports[parts.port]}", 1)
