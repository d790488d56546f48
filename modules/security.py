"""Safe serving: who may call the server, from which page, and under which host name.

`install(app, cmd_opts)` is called by app.py right after the FastAPI app is
created (before the Gradio page is mounted), so every route — API, docs,
page, Gradio's own /gradio_api/file= — passes through the same checks:

- Host header: when bound to loopback, only loopback names (127.0.0.1,
  localhost, [::1], any port) and --server-name are answered; anything else is
  a 400. A web page on evil.example that re-points its DNS name at 127.0.0.1
  (DNS rebinding) would otherwise talk to Easel as if it were same-origin.
- HTTP Basic auth on the API (/sdapi, /easel, /docs, /openapi.json) with
  --api-auth; with only --gradio-auth the API asks for those credentials, so
  the API is never a way around the page's login.
- Cross-origin: CORS stays closed unless --cors-allow-origins(-regex) opens it,
  and a state-changing API request whose Origin is neither the server itself
  nor an allowed origin is refused (403): CORS alone only hides responses, a
  cross-site form POST to /sdapi/v1/interrupt would still have its effect.
- Paths with a `..` segment, also percent-encoded once or twice, are refused
  (400) before any route sees them: no file route can be walked out of its folder.
- Headers on every response: no framing by other sites, no MIME sniffing, no
  Referer to other sites.

The middlewares are plain ASGI (not BaseHTTPMiddleware) so Gradio's streaming
responses and websockets pass through untouched.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from urllib.parse import unquote, urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PROTECTED_PREFIXES = ("/sdapi/", "/easel/", "/docs", "/redoc", "/openapi.json")
SECURITY_HEADERS = (
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PATH_SEPARATORS = re.compile(r"[/\\=]")   # "=": Gradio's route is /gradio_api/file=PATH


def install(app, cmd_opts) -> None:
    """Add the host check, API auth, origin check, CORS and security headers to `app`."""
    from modules import cmd_args

    credentials = api_credentials(cmd_opts)
    cors_origins = [o.strip() for o in (cmd_opts.cors_allow_origins or "").split(",") if o.strip()]
    cors_regex = cmd_opts.cors_allow_origins_regex or None
    # Starlette runs the middleware added last first: headers wrap everything, then
    # the host check, then CORS (so preflights are answered before auth asks for a
    # password, as browsers send no credentials with them), then origin and auth.
    app.add_middleware(ApiAuthMiddleware, credentials=credentials)
    app.add_middleware(OriginCheckMiddleware, allowed_origins=cors_origins, allowed_regex=cors_regex)
    if cors_origins or cors_regex:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_origin_regex=cors_regex,
                           allow_methods=["*"], allow_headers=["*"], allow_credentials=True)
    bound = cmd_args.server_name(cmd_opts)
    if is_loopback(bound):
        app.add_middleware(HostCheckMiddleware, allowed=allowed_hosts(cmd_opts))
    app.add_middleware(PathTraversalMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)


def api_credentials(cmd_opts) -> list[tuple[str, str]]:
    """--api-auth pairs; without it, the page's --gradio-auth pairs (the API must not bypass the login)."""
    from modules import cmd_args

    if getattr(cmd_opts, "api_auth", None):
        return cmd_args.parse_credentials(cmd_opts.api_auth, source="--api-auth")
    return cmd_args.gradio_credentials(cmd_opts)


def is_loopback(host: str | None) -> bool:
    return (host or "").strip("[]").lower() in LOOPBACK_HOSTS


def allowed_hosts(cmd_opts) -> set[str]:
    names = set(LOOPBACK_HOSTS)
    if cmd_opts.server_name:
        names.add(cmd_opts.server_name.strip("[]").lower())
    return names


def host_name(header: str) -> str:
    """Host header without port: "[::1]:7860" -> "::1", "LocalHost:80" -> "localhost"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def check_basic_auth(header: str | None, credentials: list[tuple[str, str]]) -> bool:
    """True when an `Authorization: Basic ...` header matches one of the pairs (constant-time compare)."""
    if not header or not header[:6].lower() == "basic ":
        return False
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    if not sep:
        return False
    ok = False
    for known_user, known_password in credentials:
        # compare every pair fully so the time taken does not reveal which part matched
        user_ok = hmac.compare_digest(user.encode(), known_user.encode())
        password_ok = hmac.compare_digest(password.encode(), known_password.encode())
        ok |= user_ok and password_ok
    return ok


def is_protected_path(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_json(send, status: int, payload: dict, extra_headers=()) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope, send, status: int, payload: dict, extra_headers=()) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": payload.get("detail", "")[:120]})
    else:
        await _send_json(send, status, payload, extra_headers)


class SecurityHeadersMiddleware:
    """X-Frame-Options, X-Content-Type-Options and Referrer-Policy on every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def has_parent_segment(path: str, raw_path: bytes | None = None) -> bool:
    """True when the path climbs out of a folder: "..", "%2e%2e", "%252e%252e", with / or \\ separators."""
    candidates = [path] + ([raw_path.decode("latin-1")] if raw_path else [])
    for text in candidates:
        for _ in range(3):   # a route may decode once more than Starlette did
            if ".." in PATH_SEPARATORS.split(text):
                return True
            decoded = unquote(text)
            if decoded == text:
                break
            text = decoded
    return False


class PathTraversalMiddleware:
    """400 for any request path with a `..` segment, however it is encoded."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            query = scope.get("query_string", b"").decode("latin-1")
            if has_parent_segment(scope.get("path", ""), scope.get("raw_path")) or _query_climbs(query):
                return await _refuse(scope, send, 400, {"detail": "path with '..' refused"})
        await self.app(scope, receive, send)


def _query_climbs(query: str) -> bool:
    """Gradio's file route also takes `?path=`-style values: check each query value the same way."""
    for part in query.split("&"):
        _, _, value = part.partition("=")
        if value and has_parent_segment(value):
            return True
    return False


class HostCheckMiddleware:
    """400 for a Host header that is not a loopback name or --server-name (DNS rebinding)."""

    def __init__(self, app, allowed: set[str]):
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            host = _header(scope, b"host")
            if host is None or host_name(host) not in self.allowed:
                return await _refuse(scope, send, 400, {
                    "detail": f"Host header {host!r} is not allowed: this server answers to "
                              f"{', '.join(sorted(self.allowed))} (use --server-name to add a name)"})
        await self.app(scope, receive, send)


class OriginCheckMiddleware:
    """403 for a state-changing API request sent by a page of another origin that CORS does not allow."""

    def __init__(self, app, allowed_origins: list[str], allowed_regex: str | None):
        self.app = app
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.allowed_regex = re.compile(allowed_regex) if allowed_regex else None

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        if "*" in self.allowed_origins or origin.rstrip("/") in self.allowed_origins:
            return True
        if self.allowed_regex is not None and self.allowed_regex.fullmatch(origin):
            return True
        return bool(host) and urlsplit(origin).netloc.lower() == host.strip().lower()   # same origin

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and is_protected_path(scope["path"]):
            origin = _header(scope, b"origin")
            if origin is not None and not self.origin_allowed(origin, _header(scope, b"host")):
                return await _refuse(scope, send, 403, {
                    "detail": f"cross-origin request from {origin!r} refused; allow it with --cors-allow-origins"})
        await self.app(scope, receive, send)


class ApiAuthMiddleware:
    """HTTP Basic on /sdapi, /easel and the API docs when credentials are configured."""

    def __init__(self, app, credentials: list[tuple[str, str]]):
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope, receive, send):
        if (self.credentials and scope["type"] in ("http", "websocket") and is_protected_path(scope["path"])
                and not check_basic_auth(_header(scope, b"authorization"), self.credentials)):
            return await _refuse(scope, send, 401, {"detail": "Incorrect or missing credentials (HTTP Basic)"},
                                 extra_headers=[(b"www-authenticate", b'Basic realm="Easel API"')])
        await self.app(scope, receive, send)
