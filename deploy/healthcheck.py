#!/usr/bin/env python3
"""Container healthchecks of the vigil image (installed as /usr/local/bin/vigil-healthcheck).

    vigil-healthcheck connected PORT [PORT ...] [--pid N]
        healthy when process N (default 1, the container's vigil) holds an ESTABLISHED TCP
        connection to each remote PORT: its broker (8883) and database (5432) sessions are up.
    vigil-healthcheck http URL
        healthy when GET URL answers 200.

Standard library only, so it runs in any image that has Python; exit 0 healthy, 1 not.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from pathlib import Path

ESTABLISHED = "01"


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def established_remote_ports(pid: int) -> set[int]:
    """Remote ports of the ESTABLISHED TCP connections that belong to process ``pid``."""
    mine = socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == ESTABLISHED and inode in mine:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def connected(ports: list[int], pid: int) -> str | None:
    """None when ``pid`` is connected to every port, else why not."""
    try:
        have = established_remote_ports(pid)
    except OSError as exc:
        return f"process {pid}: {exc}"
    missing = sorted(set(ports) - have)
    return f"process {pid} has no connection to port(s) {missing}" if missing else None


def http_ok(url: str) -> str | None:
    """None when GET ``url`` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status = int(response.status)
    except OSError as exc:
        return f"GET {url}: {exc}"
    return None if status == 200 else f"GET {url}: HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    """Run one check; print why it failed."""
    parser = argparse.ArgumentParser(prog="vigil-healthcheck")
    checks = parser.add_subparsers(dest="check", required=True)
    conn = checks.add_parser("connected", help="the process holds TCP connections to PORTs")
    conn.add_argument("ports", type=int, nargs="+")
    conn.add_argument("--pid", type=int, default=1)
    http = checks.add_parser("http", help="GET URL answers 200")
    http.add_argument("url")
    args = parser.parse_args(argv)
    problem = connected(args.ports, args.pid) if args.check == "connected" else http_ok(args.url)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
