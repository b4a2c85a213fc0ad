"""One ordered place for the app's request hooks and context processors (app.py
`_register_request_hooks`), and one answer to "what access does this endpoint declare"."""

import io
import logging

import pytest

from app import RequestIdFilter
from blueprints.access import UNDECLARED, access_of, is_public

BEFORE = ["assign_request_id", "check_session", "require_second_factor", "idle_timeout", "enforce_access"]


def test_before_request_hooks_run_in_the_documented_order_request_id_first(app):
    names = [getattr(f, "__name__", "") for f in app.before_request_funcs[None]]
    assert names[0] == "assign_request_id"  # ahead of the extensions' CSRF and rate-limit hooks too
    assert [n for n in names if n in BEFORE] == BEFORE


def test_no_blueprint_registers_hooks_or_context_processors_of_its_own(app):
    """Everything is registered by app.py: no blueprint-scoped hook can slip in before the request id."""
    for registry in (app.before_request_funcs, app.after_request_funcs):
        assert not any(funcs for key, funcs in registry.items() if key), "hooks registered outside app.py"
    scoped = {key: [f.__name__ for f in funcs] for key, funcs in app.template_context_processors.items() if key}
    assert all(names == ["_default_template_ctx_processor"] for names in scoped.values()), scoped
    assert [getattr(f, "__name__", "") for f in app.after_request_funcs[None]][-2:] == ["touch_session",
                                                                                       "security_headers"]
    names = [getattr(f, "__name__", "") for f in app.template_context_processors[None]]
    assert names[-3:] == ["template_helpers", "gdpr_helpers", "export_helpers"]


def test_every_hook_after_the_first_sees_the_request_id(app, client):
    """The request id is assigned before any other hook: a hook right after it sees the caller's id
    (before, the CSRF, rate-limit, session and second-factor hooks all ran without one)."""
    seen = []

    def spy():
        from flask import g

        seen.append(g.get("request_id"))

    app.before_request_funcs[None].insert(1, spy)  # right after the request id, before the CSRF check
    try:
        response = client.get("/healthz", headers={"X-Request-ID": "hook-order-1"})
    finally:
        app.before_request_funcs[None].remove(spy)
    assert response.headers["X-Request-ID"] == "hook-order-1"
    assert seen == ["hook-order-1"]


def test_access_of_answers_for_every_endpoint(app):
    with app.test_request_context():
        assert access_of("home.healthz") == "public" and is_public("home.healthz")
        assert access_of("no.such.endpoint") is UNDECLARED and not is_public("no.such.endpoint")
        for rule in app.url_map.iter_rules():
            if rule.endpoint != "static":
                assert access_of(rule.endpoint) is not UNDECLARED, rule.endpoint


@pytest.mark.parametrize("supplied", ["csrf-refused-7", None])
def test_a_csrf_refusal_keeps_the_request_id(app, client, supplied):
    """The CSRF check refuses before any view: the answer and its log line still carry the id."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # the app's own format and filter, into a buffer
    handler.setFormatter(logging.Formatter("[%(request_id)s] %(message)s"))
    handler.addFilter(RequestIdFilter())
    app.logger.addHandler(handler)
    try:
        headers = {"X-Request-ID": supplied} if supplied else {}
        response = client.post("/login", data={"email": "a@b.test", "password": "x"}, headers=headers, csrf=False)
    finally:
        app.logger.removeHandler(handler)
    assert response.status_code == 400
    rid = response.headers["X-Request-ID"]
    assert rid == supplied if supplied else len(rid) == 32
    assert f"[{rid}] CSRF refused" in stream.getvalue(), stream.getvalue()
