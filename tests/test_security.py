"""Safe serving: host check (DNS rebinding), API auth, CORS/origin, headers, path traversal."""
from __future__ import annotations

import base64

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import cmd_args, security


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def small_app(*flags, base_url="http://127.0.0.1:7860"):
    """A FastAPI app with one API route and one page route, secured as app.py secures Easel's."""
    app = FastAPI()
    security.install(app, cmd_args.parse_args(list(flags), environ={}))

    @app.get("/sdapi/v1/ping")
    def ping():
        return {"ok": True}

    @app.post("/sdapi/v1/interrupt")
    def interrupt():
        return {}

    @app.get("/page")
    def page():
        return {"page": True}

    @app.get("/files/{name:path}")
    def files(name: str):
        return {"name": name}

    return TestClient(app, base_url=base_url)


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost", "LOCALHOST:7860", "[::1]:7860", "127.0.0.1"])
def test_loopback_host_names_are_served(host):
    assert small_app().get("/page", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "127.0.0.1.evil.example", "192.168.1.5:7860"])
def test_other_host_names_are_refused_when_bound_to_loopback(host):
    response = small_app().get("/page", headers={"host": host})
    assert response.status_code == 400 and "Host header" in response.text


def test_server_name_is_allowed_and_listen_disables_host_check():
    assert small_app("--server-name", "easel.lan").get("/page", headers={"host": "easel.lan:7860"}).status_code == 200
    assert small_app("--listen").get("/page", headers={"host": "192.168.1.5:7860"}).status_code == 200


def test_api_auth_protects_api_not_page():
    client = small_app("--api-auth", "alice:secret,bob:pa:ss")
    missing = client.get("/sdapi/v1/ping")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Basic")
    assert client.get("/sdapi/v1/ping", headers=basic("alice", "wrong")).status_code == 401
    assert client.get("/sdapi/v1/ping", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert client.get("/sdapi/v1/ping", headers=basic("alice", "secret")).status_code == 200
    assert client.get("/sdapi/v1/ping", headers=basic("bob", "pa:ss")).status_code == 200   # ':' in a password
    assert client.get("/page").status_code == 200


def test_gradio_auth_alone_also_guards_the_api():
    client = small_app("--gradio-auth", "carol:pw")
    assert client.get("/sdapi/v1/ping").status_code == 401
    assert client.get("/sdapi/v1/ping", headers=basic("carol", "pw")).status_code == 200


def test_no_credentials_means_open_api():
    assert small_app().get("/sdapi/v1/ping").status_code == 200


def test_security_headers_on_every_response():
    client = small_app("--api-auth", "a:b")
    for response in (client.get("/page"), client.get("/sdapi/v1/ping"), client.get("/missing")):
        assert response.headers["x-frame-options"] == "SAMEORIGIN"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


def test_cors_closed_by_default():
    client = small_app()
    response = client.get("/sdapi/v1/ping", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options("/sdapi/v1/interrupt", headers={"origin": "http://evil.example",
                                                              "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_opened_by_flags_for_named_origins_only():
    client = small_app("--cors-allow-origins", "http://app.example:3000", "--cors-allow-origins-regex", r"https://.*\.ok\.example")
    for origin in ("http://app.example:3000", "https://x.ok.example"):
        response = client.get("/sdapi/v1/ping", headers={"origin": origin})
        assert response.headers["access-control-allow-origin"] == origin
        assert client.post("/sdapi/v1/interrupt", headers={"origin": origin}).status_code == 200
    assert "access-control-allow-origin" not in client.get("/sdapi/v1/ping", headers={"origin": "http://evil.example"}).headers


def test_cross_site_post_to_api_is_refused():
    client = small_app()
    assert client.post("/sdapi/v1/interrupt", headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post("/sdapi/v1/interrupt", headers={"origin": "http://127.0.0.1:7860"}).status_code == 200
    assert client.post("/sdapi/v1/interrupt").status_code == 200                  # scripts send no Origin


@pytest.mark.parametrize("path", [
    "/files/../etc/passwd", "/files/%2e%2e/etc/passwd", "/files/%2E%2E%2Fetc%2Fpasswd", "/files/%252e%252e%252fetc",
    "/files/..%5Cetc", "/file=../etc/passwd", "/file=%2e%2e/etc/passwd", "/files/x?path=../../etc/passwd",
])
def test_parent_segments_are_refused(path):
    assert raw_status(small_app().app, path) == 400, path


def raw_status(app, target: str) -> int:
    """Status for a request line sent as-is (HTTP clients tidy `..` away; curl --path-as-is and attackers do not)."""
    import asyncio
    from urllib.parse import unquote

    path, _, query = target.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": unquote(path), "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"127.0.0.1:7860")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 7860)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_check_basic_auth_rejects_malformed_headers():
    pairs = [("u", "p")]
    assert security.check_basic_auth(basic("u", "p")["Authorization"], pairs)
    for header in (None, "", "Bearer x", "Basic", "Basic " + base64.b64encode(b"up").decode()):
        assert not security.check_basic_auth(header, pairs)


@pytest.fixture(scope="module")
def full_easel(tmp_path_factory):
    """The real app with the Gradio page, --api and --gradio-auth (no model needed)."""
    from tests.test_api_support import start_easel

    root = tmp_path_factory.mktemp("easel-sec")
    (root / "data" / "outputs").mkdir(parents=True)
    (root / "secret.txt").write_text("top secret")
    easel = start_easel(root, ["--api", "--gradio-auth", "dave:pw"], load=False)
    yield easel
    easel.close()


def test_full_app_api_requires_page_credentials(full_easel):
    client = full_easel.client
    assert client.get("/sdapi/v1/options").status_code == 401
    assert client.get("/easel/v1/queue").status_code == 401
    assert client.get("/docs").status_code == 401
    assert client.get("/sdapi/v1/options", headers=basic("dave", "pw")).status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and page.headers["x-frame-options"] == "SAMEORIGIN"
    assert client.get("/config").status_code in (401, 403) or "components" not in client.get("/config").text


def test_full_app_file_routes_do_not_leave_their_folders(full_easel):
    client = full_easel.client
    secret = full_easel.root / "secret.txt"
    outputs = full_easel.root / "data" / "outputs"
    for prefix in ("/file=", "/gradio_api/file="):
        for path in (f"{outputs}/../../secret.txt", f"{outputs}/%2e%2e/%2e%2e/secret.txt",
                     f"{outputs}/%252e%252e/%252e%252e/secret.txt", str(secret), "/etc/passwd"):
            for headers in ({}, basic("dave", "pw")):
                response = client.get(prefix + path, headers=headers)
                assert response.status_code != 200, (prefix + path, response.status_code)
                assert "top secret" not in response.text and "root:" not in response.text
            if ".." in path or "%2" in path:   # sent as-is, without the client tidying the path
                assert raw_status(full_easel.app, prefix + path) == 400
