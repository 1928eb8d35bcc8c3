"""The official AsyncAPI JavaScript parser reads the document without an error or a warning.

The parser (``@asyncapi/parser`` 3.6.3 and its dependencies, pinned with integrity hashes by
``asyncapi_parser/package-lock.json``) is installed by ``npm ci`` from the npm registry on first
use into a cache keyed by the lock file's hash, so later runs install nothing.
``VIGIL_ASYNCAPI_PARSER_DIR=<directory with node_modules/@asyncapi/parser>`` uses another copy.
Skipped only on a machine without Node.js and npm; the JSON Schema check in test_asyncapi.py
always runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
PINNED = Path(__file__).resolve().parent / "asyncapi_parser"
SCRIPT = """
import { Parser, fromFile } from '@asyncapi/parser';
const { document, diagnostics } = await fromFile(new Parser(), process.argv[2]).parse();
console.log(JSON.stringify({
  parsed: Boolean(document),
  channels: document ? document.channels().length : 0,
  diagnostics: diagnostics.map(d => ({severity: d.severity, code: d.code, message: d.message})),
}));
"""


def _installed(folder: Path) -> bool:
    return (folder / "node_modules" / "@asyncapi" / "parser" / "package.json").is_file()


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vigil"


@pytest.fixture(scope="session")
def parser_dir() -> Path:
    """A directory whose node_modules hold the pinned parser (installed once per lock file)."""
    given = os.environ.get("VIGIL_ASYNCAPI_PARSER_DIR", "")
    if given:
        assert _installed(Path(given)), f"no @asyncapi/parser under {given}/node_modules"
        return Path(given)
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed to run the official AsyncAPI parser")
    lock = (PINNED / "package-lock.json").read_bytes()
    folder = _cache_root() / f"asyncapi-parser-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not _installed(folder):
        # Installed beside the final folder and renamed into place, so that an interrupted
        # install is never taken for a finished one.
        staging = folder.with_name(folder.name + f".{os.getpid()}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(PINNED / name, staging / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=staging,
            check=True,
            timeout=600,
        )
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return folder


def test_the_official_parser_reads_the_document(parser_dir: Path) -> None:
    # An ES module finds its imports from its own folder upwards (NODE_PATH is CommonJS only),
    # so the script lives beside node_modules.
    script = parser_dir / "vigil-check-asyncapi.mjs"
    script.write_text(SCRIPT)
    done = subprocess.run(
        ["node", str(script), str(DOC)], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["parsed"] and report["channels"] >= 6, report
    # Severity 0 is an error, 1 a warning; 2 and 3 are information and hints (such as "3.1.0
    # exists"), which are not faults of the document.
    serious = [d for d in report["diagnostics"] if d["severity"] < 2]
    assert serious == [], serious
