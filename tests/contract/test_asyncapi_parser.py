"""The official AsyncAPI JavaScript parser reads the document without an error or a warning.

Needs Node.js and ``@asyncapi/parser`` (3.6.3 was used): ``npm install @asyncapi/parser@3.6.3``
in a directory, then ``VIGIL_ASYNCAPI_PARSER_DIR=<that directory> pytest tests/contract``.
Skipped without them; the JSON Schema check in test_asyncapi.py always runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
PARSER_DIR = os.environ.get("VIGIL_ASYNCAPI_PARSER_DIR", "")
SCRIPT = """
import { Parser, fromFile } from '@asyncapi/parser';
const { document, diagnostics } = await fromFile(new Parser(), process.argv[2]).parse();
console.log(JSON.stringify({
  parsed: Boolean(document),
  channels: document ? document.channels().length : 0,
  diagnostics: diagnostics.map(d => ({severity: d.severity, code: d.code, message: d.message})),
}));
"""


@pytest.mark.skipif(
    not PARSER_DIR
    or shutil.which("node") is None
    or not (Path(PARSER_DIR) / "node_modules" / "@asyncapi" / "parser").is_dir(),
    reason="set VIGIL_ASYNCAPI_PARSER_DIR to a directory with @asyncapi/parser installed",
)
def test_the_official_parser_reads_the_document(tmp_path: Path) -> None:
    script = Path(PARSER_DIR) / "vigil-check-asyncapi.mjs"
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
