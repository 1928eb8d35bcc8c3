"""A small FHIR server for the upload tests: transaction Bundles, conditional create, OAuth2.

It keeps resources by identifier (system|value), validates each with fhir.resources, resolves
urn:uuid references, and answers a transaction-response Bundle. It runs under uvicorn in a
thread, on a fixed port, so a test can stop it and start it again where the uploader expects
it. ``commit_then_fail`` stores the next bundles but answers 500 (an answer lost after the
commit); ``refuse_codes`` refuses Observations with one of those vigil metric codes (422).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.fhir.validate import FhirInvalid, validate
from testing_services import free_port

CLIENT_ID, CLIENT_SECRET = "vigil-uploader", "s3cret-for-tests"


@dataclass
class FhirStore:
    """What the server holds, surviving restarts of its HTTP side."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Type/id" → resource
    by_identifier: dict[str, str] = field(default_factory=dict)  # "Type|system|value" → "Type/id"
    created: Counter[str] = field(default_factory=Counter)  # identifier key → creations
    tokens: set[str] = field(default_factory=set)
    commit_then_fail: int = 0
    refuse_codes: set[str] = field(default_factory=set)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Every stored resource of ``kind``."""
        return [r for key, r in self.resources.items() if key.startswith(f"{kind}/")]


def _outcome(status: int, text: str) -> JSONResponse:
    issue = {"severity": "error", "code": "invalid", "diagnostics": text}
    return JSONResponse({"resourceType": "OperationOutcome", "issue": [issue]}, status)


def _identifier_key(kind: str, query: str) -> str:
    name, _, token = query.partition("=")
    assert name == "identifier", query
    system, _, value = unquote(token).replace("\\|", "\x00").partition("|")
    return f"{kind}|{system.replace(chr(0), '|')}|{value.replace(chr(0), '|')}"


def _rewrite(value: Any, urls: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: urls.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, urls)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(v, urls) for v in value]
    return value


def _process(store: FhirStore, bundle: dict[str, Any]) -> tuple[int, Any]:
    """Apply a transaction all or nothing; (status, body)."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        return 400, "not a transaction Bundle"
    urls: dict[str, str] = {}
    new: dict[str, tuple[str, dict[str, Any]]] = {}  # Type/id → (identifier key, resource)
    answers = []
    for entry in bundle.get("entry", []):
        resource, request = entry["resource"], entry["request"]
        kind = resource["resourceType"]
        if kind == "Observation":
            codes = {c["code"] for c in resource["code"]["coding"]}
            if codes & store.refuse_codes:
                return 422, f"Observation with code {sorted(codes & store.refuse_codes)} refused"
        key = _identifier_key(kind, request["ifNoneExist"])
        existing = store.by_identifier.get(key) or next(
            (ref for ref, (k, _) in new.items() if k == key), None
        )
        if existing is not None:
            urls[entry["fullUrl"]] = existing
            answers.append({"status": "200 OK", "location": existing})
            continue
        ref = f"{kind}/{uuid.uuid4().hex}"
        urls[entry["fullUrl"]] = ref
        new[ref] = (key, resource)
        answers.append({"status": "201 Created", "location": ref})
    for ref, (key, resource) in new.items():
        stored = _rewrite(resource, urls) | {"id": ref.split("/")[1]}
        try:
            validate(stored)
        except FhirInvalid as exc:
            return 422, str(exc)
        if any(str(r.get("reference", "")).startswith("urn:") for r in _refs(stored)):
            return 422, f"{ref}: unresolved reference"
        new[ref] = (key, stored)
    for ref, (key, stored) in new.items():
        store.resources[ref] = stored
        store.by_identifier[key] = ref
        store.created[key] += 1
    body = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [{"response": a} for a in answers],
    }
    validate(body)
    return 200, body


def _refs(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        found = [value] if "reference" in value else []
        return found + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def build_app(store: FhirStore) -> FastAPI:
    """The server's app over ``store``."""
    app = FastAPI()

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = parse_qs((await request.body()).decode())
        basic = request.headers.get("authorization", "").removeprefix("Basic ")
        who = base64.b64decode(basic).decode() if basic else ""
        if (
            form.get("grant_type") != ["client_credentials"]
            or who != f"{CLIENT_ID}:{CLIENT_SECRET}"
        ):
            return JSONResponse({"error": "invalid_client"}, 401)
        issued = uuid.uuid4().hex
        store.tokens.add(issued)
        return JSONResponse({"access_token": issued, "token_type": "bearer", "expires_in": 3600})

    @app.post("/fhir")
    async def transaction(request: Request) -> JSONResponse:
        store.requests += 1
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in store.tokens:
            return _outcome(401, "unknown token")
        try:
            bundle = json.loads(await request.body())
            validate(bundle)
        except (ValueError, FhirInvalid) as exc:
            return _outcome(400, str(exc))
        with store.lock:
            status, body = _process(store, bundle)
            if status == 200 and store.commit_then_fail > 0:
                store.commit_then_fail -= 1
                return _outcome(500, "committed, then lost the answer")
        return JSONResponse(body, status) if status == 200 else _outcome(status, body)

    return app


class FhirServer:
    """The server under uvicorn in a thread; ``stop()`` and ``start()`` keep the port and data."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.store = FhirStore()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The FHIR base the uploader posts to."""
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint."""
        return f"http://127.0.0.1:{self.port}/token"

    def start(self, timeout: float = 30.0) -> None:
        """Serve until ``stop()``."""
        config = uvicorn.Config(
            build_app(self.store), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"FHIR test server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (the data stays)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = self._thread = None
