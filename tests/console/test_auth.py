"""Login, sessions, CSRF and logout, in process."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import build_app
from service.api.schemas import Principal, Role
from service.api.settings import ApiGuards
from service.console.session import SessionStore
from service.store import SqliteStore
from tests.console.conftest import csrf_of, login, token_of


def test_login_sets_a_strict_httponly_session_cookie_and_lands_on_the_role_home(
    console_app: FastAPI,
) -> None:
    client = TestClient(console_app)
    answer = login(client, token_of("nurse"))
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/ward"
    cookie = answer.headers["set-cookie"]
    assert "vigil_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; TLS adds it
    assert client.get("/console/ward").status_code == 200


def test_session_cookie_is_secure_under_tls(console_app: FastAPI) -> None:
    client = TestClient(console_app, base_url="https://testserver")
    answer = login(client, token_of("patient"))
    assert "Secure" in answer.headers["set-cookie"]
    assert answer.headers["location"] == "/console/me"


def test_wrong_token_is_refused_with_the_form_again(console_app: FastAPI) -> None:
    client = TestClient(console_app)
    answer = login(client, "x" * 40)
    assert answer.status_code == 401
    assert "not valid" in answer.text
    assert "vigil_session" not in answer.headers.get("set-cookie", "")


def test_login_without_its_csrf_cookie_is_refused(console_app: FastAPI) -> None:
    client = TestClient(console_app)
    answer = client.post("/console/login", data={"token": token_of("nurse"), "csrf": "forged"})
    assert answer.status_code == 403


def test_pages_without_a_session_redirect_to_login_and_htmx_is_told_to(
    console_app: FastAPI,
) -> None:
    client = TestClient(console_app)
    answer = client.get("/console/ward", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"
    htmx = client.get("/console/ward/rows", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["HX-Redirect"] == "/console/login"


def test_a_bearer_token_alone_opens_no_console_page(console_app: FastAPI) -> None:
    client = TestClient(console_app)
    answer = client.get(
        "/console/ward",
        headers={"Authorization": f"Bearer {token_of('nurse')}"},
        follow_redirects=False,
    )
    assert answer.status_code == 303


def test_posts_without_the_csrf_token_are_refused(
    login_client: Callable[[str], TestClient],
) -> None:
    client = login_client("nurse")
    assert client.post("/console/logout").status_code == 403
    assert client.post("/console/logout", data={"csrf": "wrong"}).status_code == 403
    htmx = client.post("/console/logout", headers={"X-CSRF-Token": "wrong", "HX-Request": "1"})
    assert htmx.status_code == 403
    assert client.get("/console/ward").status_code == 200  # still logged in


def test_logout_ends_the_session(login_client: Callable[[str], TestClient]) -> None:
    client = login_client("nurse")
    token = csrf_of(client, "/console/ward")
    answer = client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/console/ward", follow_redirects=False).status_code == 303


def test_roles_are_kept_to_their_screens(login_client: Callable[[str], TestClient]) -> None:
    patient = login_client("patient")
    assert patient.get("/console/ward").status_code == 403
    nurse = login_client("nurse")
    assert nurse.get("/console/me").status_code == 404


def test_navigation_shows_only_the_roles_screens(
    login_client: Callable[[str], TestClient],
) -> None:
    nurse = login_client("nurse").get("/console/ward").text
    assert 'href="/console/ward"' in nurse and 'href="/console/me"' not in nurse
    patient = login_client("patient").get("/console/me").text
    assert 'href="/console/me"' in patient and 'href="/console/ward"' not in patient


def test_sessions_expire_when_idle_and_after_their_lifetime() -> None:
    now = [0.0]
    sessions = SessionStore(idle_s=10, lifetime_s=25, clock=lambda: now[0])
    who = Principal(role=Role.HOSPITAL, subject="s1")
    session = sessions.start(who, "k")
    now[0] = 9
    assert sessions.get(session.id) is not None
    now[0] = 18
    assert sessions.get(session.id) is not None  # seen at 9: idle only 9 s
    now[0] = 26
    assert sessions.get(session.id) is None  # past its lifetime
    other = sessions.start(who, "k")
    now[0] = 37
    assert sessions.get(other.id) is None  # idle 11 s
    assert sessions.get("nonsense") is None and sessions.get(None) is None


def test_sessions_are_bounded() -> None:
    sessions = SessionStore(max_sessions=3)
    who = Principal(role=Role.PATIENT, subject="p1")
    first = sessions.start(who, "k")
    for _ in range(3):
        sessions.start(who, "k")
    assert len(sessions) == 3
    assert sessions.get(first.id) is None


def test_the_live_feed_needs_a_session(console_app: FastAPI) -> None:
    client = TestClient(console_app)
    answer = client.get("/console/live", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"


def test_console_pages_forbid_framing_and_inline_script(
    login_client: Callable[[str], TestClient],
) -> None:
    headers = login_client("nurse").get("/console/ward").headers
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"


def test_api_errors_stay_json_while_console_errors_are_pages(console_app: FastAPI) -> None:
    client = TestClient(console_app)
    api = client.get("/devices/nope", headers={"Authorization": f"Bearer {token_of('admin')}"})
    assert api.status_code == 404 and api.json() == {"detail": "not found"}
    login(client, token_of("patient"))
    page = client.get("/console/patients/nope")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_guessing_tokens_at_the_login_form_is_throttled_like_the_api() -> None:
    store = SqliteStore(":memory:")
    tokens = {token_of("nurse"): Principal(role=Role.HOSPITAL, subject="s1")}
    app = build_app(store, tokens, guards=ApiGuards(auth_failure_limit="2/minute"))
    client = TestClient(app)
    assert login(client, "y" * 40).status_code == 401
    assert login(client, "z" * 40).status_code == 401
    refused = login(client, token_of("nurse"))  # even the right token, until the window passes
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "Too many requests" in refused.text
