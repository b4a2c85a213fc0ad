"""What every page shares: CSRF on every form, security headers, request ids, safe redirects after
sign-in, error pages, health endpoints, the session cookie, and templates free of inline script
and CDNs. Routes are read from `app.url_map`, never listed by hand."""
import os
import re
import socket
from urllib.parse import urlsplit

from blueprints.access import public
from extensions import db
from services import tokens
from tests.factories import make_user, make_workspace

# Shared helpers and fixtures of the access matrix (fresh-context browser, fast hashing, a fresh
# app built like the `app` fixture, the row snapshot, the route table, the form payload).
from tests.integration.test_access_matrix import (  # noqa: F401  (fixtures are used by name)
    _route_table,
    browser,
    build_world,
    fast_password_hashing,
    fill,
    form_payload,
    fresh_app,
    snapshot,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATES = os.path.join(ROOT, "templates")
STATIC = os.path.join(ROOT, "static")


def csp(response):
    """The Content-Security-Policy as {directive: [sources]}."""
    header = response.headers.get("Content-Security-Policy")
    assert header, "no Content-Security-Policy header"
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def in_layout(body):
    return 'class="topbar"' in body and 'class="footer"' in body and "</html>" in body


# --- CSRF -----------------------------------------------------------------------------------------

def form_post_rules():
    return [rule for rule, _, methods, access in _route_table()
            if "POST" in methods and not rule.startswith("/api/")]


def test_every_form_post_without_csrf_token_is_refused_and_changes_nothing(browser):
    rules = form_post_rules()
    assert len(rules) >= 5
    world = build_world(objects_in_b=False)
    admin = browser(world.emails["admin"])
    problems = []
    for rule in rules:  # every refusal leaves the world as it was, so one world serves all
        url, _ = fill(rule, world.a.slug, world.a)
        before = snapshot()
        response = admin.post(url, data=form_payload(url), csrf=False)
        if response.status_code != 400:
            problems.append(f"POST {url} without a CSRF token -> {response.status_code}, expected 400")
        elif "not sent from this site" not in response.get_data(as_text=True):
            problems.append(f"POST {url}: 400, but not for the missing CSRF token")
        if snapshot() != before:
            problems.append(f"POST {url} without a CSRF token changed stored data")
    assert not problems, "\n".join(problems)
    assert admin.get("/account").status_code == 200, "a refused POST signed the admin out"


def test_the_same_form_post_with_the_token_goes_through(browser):
    # The counterpart that shows the refusal above is about the token, not the payload.
    world = build_world(objects_in_b=False)
    admin = browser(world.emails["admin"])
    url = f"/w/{world.a.slug}/settings"
    response = admin.post(url, data={"name": "Alpha Renamed", "timezone": "UTC", "sending_window": "08:00-20:00"})
    assert response.status_code == 302
    db.session.expire_all()
    assert world.a.name == "Alpha Renamed"


# --- security headers ----------------------------------------------------------------------------

def _assert_security_headers(response):
    policy = csp(response)
    script_sources = policy.get("script-src", policy.get("default-src"))
    assert script_sources, "CSP does not restrict scripts"
    assert "'unsafe-inline'" not in script_sources and "'unsafe-eval'" not in script_sources
    assert not any(s.startswith("http") or s == "*" for s in script_sources), script_sources
    assert policy.get("frame-ancestors") == ["'none'"]
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") in {"same-origin", "no-referrer", "strict-origin",
                                                       "strict-origin-when-cross-origin"}


def test_security_headers_on_a_page_an_error_page_and_an_api_response(browser):
    web = browser()
    page = web.get("/login")
    assert page.status_code == 200
    _assert_security_headers(page)

    error = web.get("/no-such-page")
    assert error.status_code == 404
    _assert_security_headers(error)

    api = web.get("/api/v1/me")
    assert api.status_code == 401 and api.is_json
    _assert_security_headers(api)
    _assert_security_headers(web.get("/api/v1/openapi.json"))


def test_hsts_only_over_https(browser):
    web = browser()
    secure = web.get("/login", base_url="https://mc.test")
    assert secure.status_code == 200
    hsts = secure.headers.get("Strict-Transport-Security", "")
    max_age = re.search(r"max-age=(\d+)", hsts)
    assert max_age and int(max_age.group(1)) >= 180 * 24 * 3600, hsts
    assert "Strict-Transport-Security" not in web.get("/login").headers


# --- request ids ----------------------------------------------------------------------------------

def test_a_valid_request_id_is_echoed_in_the_header_and_the_page(browser):
    response = browser().get("/login", headers={"X-Request-ID": "lb-7f3a.42_x"})
    assert response.headers["X-Request-ID"] == "lb-7f3a.42_x"
    assert "lb-7f3a.42_x" in response.get_data(as_text=True)


def test_a_missing_or_invalid_request_id_is_replaced_by_a_generated_one(browser):
    web = browser()
    for supplied in (None, "", "has space", "x" * 65, "<script>", "a/b", "ünïcode", "id;drop"):
        headers = {} if supplied is None else {"X-Request-ID": supplied}
        first = web.get("/healthz", headers=headers).headers["X-Request-ID"]
        second = web.get("/healthz", headers=headers).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", first), (supplied, first)
        assert first != second, supplied


# --- sign-in redirects ----------------------------------------------------------------------------

def _sign_in(browser, next_target):
    make_user("ops@example.com", workspace=make_workspace("ops"), role="admin")
    web = browser()
    web.refresh_csrf()
    return web, web.post("/login", query_string={"next": next_target},
                         data={"email": "ops@example.com", "password": "correct horse battery staple"})


def test_sign_in_follows_a_local_next_path(browser):
    _, response = _sign_in(browser, "/account?tab=security")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc in ("", "mc.test")
    assert (location.path, location.query) == ("/account", "tab=security")


OPEN_REDIRECTS = ("//evil.com", "https://evil.com", "/\\evil.com", "javascript:alert(1)",
                  "http://evil.com/login", "///evil.com", "/\t/evil.com", " //evil.com")


def test_sign_in_refuses_open_redirects_and_goes_to_the_start_page(browser):
    make_user("ops@example.com", workspace=make_workspace("ops"), role="admin")
    for target in OPEN_REDIRECTS:
        web = browser()
        web.refresh_csrf()
        response = web.post("/login", query_string={"next": target},
                            data={"email": "ops@example.com", "password": "correct horse battery staple"})
        assert response.status_code == 302, target
        location = urlsplit(response.headers["Location"])
        assert location.netloc in ("", "mc.test") and location.path == "/", (target, response.headers["Location"])
        assert "evil" not in response.headers["Location"]
        # Already signed in: /login?next=... applies the same rule.
        again = web.get("/login", query_string={"next": target})
        assert again.status_code == 302 and urlsplit(again.headers["Location"]).path == "/", target


# --- error pages ----------------------------------------------------------------------------------

def test_browser_error_pages_are_html_inside_the_layout(browser):
    world = build_world(objects_in_b=False)
    author = browser(world.emails["author"])
    for url, method, status in ((f"/w/{world.a.slug}/members", "GET", 403),  # refused by the table
                                ("/no-such-page", "GET", 404),
                                ("/logout", "GET", 405)):                      # POST only
        response = author.open(url, method=method)
        body = response.get_data(as_text=True)
        assert response.status_code == status, url
        assert response.mimetype == "text/html", url
        assert in_layout(body), f"{url}: the {status} page is not inside the layout"
        assert f"{status} —" in body


def test_api_errors_are_json_with_a_code(browser):
    world = build_world(objects_in_b=False)
    from services import accounts

    _, author_token = tokens.create_token(accounts.find_user(world.emails["author"]), world.a, "author CI")
    api = browser()
    cases = ((api.get("/api/v1/no-such-thing"), 404, "not_found"),
             (api.post("/api/v1/me", headers={"Authorization": f"Bearer {author_token}"}), 405, "method_not_allowed"),
             (api.get("/api/v1/audit", headers={"Authorization": f"Bearer {author_token}"}), 403, "forbidden"),
             (api.get("/api/v1/me"), 401, "unauthorized"))
    for response, status, code in cases:
        assert response.status_code == status
        assert response.is_json, response.get_data(as_text=True)[:200]
        assert response.get_json()["error"]["code"] == code
        assert response.get_json()["error"]["message"]


def test_an_unexpected_error_renders_the_layout_with_the_request_id_and_no_traceback(fresh_app, browser):
    application = fresh_app()

    def explode():
        raise RuntimeError("kaboom: secret internals")

    application.add_url_rule("/explode", "explode", public(explode))
    application.add_url_rule("/api/v1/explode", "api_explode", public(explode))
    web = browser(target=application)

    response = web.get("/explode", headers={"X-Request-ID": "trace-500-abc"})
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert in_layout(body)
    assert "trace-500-abc" in body
    for leak in ("Traceback", "kaboom", "RuntimeError", 'File "'):
        assert leak not in body

    api = web.get("/api/v1/explode")
    assert api.status_code == 500 and api.is_json
    assert api.get_json()["error"]["code"] == "internal_error"
    assert "kaboom" not in api.get_data(as_text=True) and "Traceback" not in api.get_data(as_text=True)


# --- health ---------------------------------------------------------------------------------------

def test_healthz_says_the_process_is_alive(browser):
    response = browser().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_database_redis_and_audit(browser):
    response = browser().get("/readyz")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "ok"
    assert body == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "audit": "ok"}}


def test_readyz_is_503_when_redis_is_unreachable(fresh_app, browser):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    application = fresh_app(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    response = browser(target=application).get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] != "ok"
    # Status words only: no exception text, host or port for an anonymous caller.
    assert body == {"status": "unavailable", "checks": {"database": "ok", "redis": "down", "audit": "ok"}}
    assert str(port) not in response.get_data(as_text=True)


# --- session cookie -------------------------------------------------------------------------------

def test_the_session_cookie_is_httponly_and_samesite_lax(browser):
    make_user("ops@example.com", workspace=make_workspace("ops"), role="admin")
    web = browser()
    web.refresh_csrf()
    response = web.post("/login", data={"email": "ops@example.com", "password": "correct horse battery staple"})
    assert response.status_code == 302
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("mc_session=")]
    assert cookies, "sign-in did not set the session cookie"
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookies[-1].split(";")[1:]}
    assert "httponly" in attributes
    assert attributes.get("samesite", "").lower() == "samesite=lax"


# --- templates ------------------------------------------------------------------------------------

def _files(top, suffixes):
    for folder, _, names in os.walk(top):
        for name in sorted(names):
            if name.endswith(suffixes):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as fh:
                    yield os.path.relpath(path, ROOT), fh.read()


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>", re.I)
SCRIPT_BODY = re.compile(r"<script\b[^>]*>(.*?)</script\s*>", re.I | re.S)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I | re.S)
JS_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)
# Anything the browser loads by itself: src=, <link href=>, CSS url(), @import.
EXTERNAL_ASSET = re.compile(r"""(?:\bsrc\s*=|<link\b[^>]*\bhref\s*=|url\(|@import)\s*["']?\s*(?:https?:)?//""", re.I)
ANY_URL = re.compile(r"https?://[^\s\"'<>)]+", re.I)
CDN_HINT = re.compile(r"cdn|jsdelivr|unpkg|googleapis|gstatic|cloudflare|jquery|bootstrap|fontawesome", re.I)


def test_templates_have_no_inline_script():
    files = list(_files(TEMPLATES, (".html", ".jinja", ".j2", ".svg")))
    assert files
    for path, source in files:
        assert not INLINE_SCRIPT.search(source), f"{path}: inline <script> (CSP forbids it)"
        for body in SCRIPT_BODY.findall(source):
            assert not body.strip(), f"{path}: a <script src> tag with inline code"
        assert not EVENT_HANDLER.search(source), f"{path}: inline event handler attribute"
        assert not JS_URL.search(source), f"{path}: javascript: URL"


def test_templates_and_styles_load_nothing_from_a_cdn():
    files = list(_files(TEMPLATES, (".html", ".jinja", ".j2", ".svg"))) + list(_files(STATIC, (".css", ".js")))
    for path, source in files:
        assert not EXTERNAL_ASSET.search(source), f"{path}: loads an asset from another host"
        for url in ANY_URL.findall(source):
            assert not CDN_HINT.search(urlsplit(url).netloc), f"{path}: CDN URL {url}"


def test_a_deactivated_account_loses_its_open_sessions(browser):
    from services import accounts

    make_user("ops@example.com", workspace=make_workspace("ops"), role="admin")
    web = browser("ops@example.com")
    assert web.get("/account").status_code == 200
    accounts.find_user("ops@example.com").is_active_account = False
    db.session.commit()
    response = web.get("/w/ops/members")
    assert response.status_code == 302 and urlsplit(response.headers["Location"]).path == "/login"


def test_outside_the_api_only_a_client_preferring_json_gets_a_json_error(browser):
    web = browser()
    assert web.get("/no-such-page", headers={"Accept": "*/*"}).mimetype == "text/html"
    assert web.get("/no-such-page", headers={"Accept": "text/html,*/*;q=0.8"}).mimetype == "text/html"
    wants_json = web.get("/no-such-page", headers={"Accept": "application/json"})
    assert wants_json.status_code == 404 and wants_json.get_json()["error"]["code"] == "not_found"
