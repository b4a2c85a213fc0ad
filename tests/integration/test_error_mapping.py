"""Domain errors are mapped to answers once, in app.py: a view that lets NotFound / Forbidden /
Conflict / DomainError escape gets the 404 page, the 403 page, or the refusal as a JSON error with
its code or as a flash on the page the form came from — never a 500."""
from blueprints.access import public
from services.errors import Conflict, DomainError, Forbidden, NotFound
from tests.integration.test_access_matrix import browser, fresh_app  # noqa: F401  (fixtures are used by name)

ERRORS = {"missing": NotFound("no such thing"), "refused": Forbidden("not yours"),
          "conflict": Conflict("Someone else decided first.", code="already_decided"),
          "invalid": DomainError("That date is in the past.", code="bad_date")}


def app_with_raising_routes(fresh_app):  # noqa: F811
    application = fresh_app()
    for name, error in ERRORS.items():
        def view(error=error):
            raise error
        view.__name__ = f"raise_{name}"
        application.add_url_rule(f"/raise/{name}", f"raise_{name}", public(view), methods=["GET", "POST"])
        application.add_url_rule(f"/api/v1/raise/{name}", f"api_raise_{name}", public(view), methods=["GET"])
    return application


def test_not_found_and_forbidden_are_the_error_pages(fresh_app, browser):  # noqa: F811
    web = browser(target=app_with_raising_routes(fresh_app))
    for name, status in (("missing", 404), ("refused", 403)):
        page = web.get(f"/raise/{name}")
        assert page.status_code == status and page.mimetype == "text/html"
        api = web.get(f"/api/v1/raise/{name}")
        assert api.status_code == status and api.get_json()["error"]["code"] == {404: "not_found",
                                                                                 403: "forbidden"}[status]


def test_a_refusal_is_a_json_error_with_its_code(fresh_app, browser):  # noqa: F811
    web = browser(target=app_with_raising_routes(fresh_app))
    conflict = web.get("/api/v1/raise/conflict")
    assert conflict.status_code == 409
    assert conflict.get_json() == {"error": {"code": "already_decided", "message": "Someone else decided first."}}
    invalid = web.get("/api/v1/raise/invalid")
    assert invalid.status_code == 400 and invalid.get_json()["error"]["code"] == "bad_date"


def test_a_refused_form_post_flashes_on_the_page_it_came_from(fresh_app, browser):  # noqa: F811
    application = app_with_raising_routes(fresh_app)
    application.config["WTF_CSRF_ENABLED"] = False
    web = browser(target=application)
    posted = web.post("/raise/invalid", headers={"Referer": "http://mc.test/healthz?from=form"})
    assert posted.status_code == 303
    assert posted.headers["Location"].endswith("/healthz?from=form")
    with web.session_transaction() as session:
        assert ("error", "That date is in the past.") in session.get("_flashes", [])
    foreign = web.post("/raise/conflict", headers={"Referer": "https://evil.example/phish"})
    assert foreign.status_code == 303 and foreign.headers["Location"] in ("/", "http://mc.test/")


def app_with_named_destinations(fresh_app):  # noqa: F811
    """Views that name the page their refusals go to (blueprints.refusals_go_to)."""
    from blueprints import refusals_go_to

    application = fresh_app()
    application.config["WTF_CSRF_ENABLED"] = False
    application.add_url_rule("/landing/<int:item_id>", "landing", public(lambda item_id: "landing"))
    def fresh(error):  # a new exception per request, as services raise them
        return type(error)(error.message, code=error.code)

    for name, error in ERRORS.items():
        @refusals_go_to("landing", tab="x")
        def decorated(item_id, error=error):
            raise fresh(error)

        def in_block(item_id, error=error):
            with refusals_go_to("landing", item_id=item_id + 1):
                raise fresh(error)

        @refusals_go_to("landing", missing_too=True)
        def missing_too(item_id, error=error):
            raise fresh(error)

        for prefix, view in (("deco", decorated), ("with", in_block), ("missing", missing_too)):
            view.__name__ = f"{prefix}_{name}"
            application.add_url_rule(f"/{prefix}/{name}/<int:item_id>", f"{prefix}_{name}", public(view),
                                     methods=["POST"])
    return application


def test_a_refusal_goes_to_the_page_the_view_names(fresh_app, browser):  # noqa: F811
    web = browser(target=app_with_named_destinations(fresh_app))
    for name in ("conflict", "invalid", "refused"):
        posted = web.post(f"/deco/{name}/7", headers={"Referer": "http://mc.test/elsewhere"})
        assert posted.status_code == 302, name
        assert posted.headers["Location"].endswith("/landing/7?tab=x"), name  # not the referrer
        with web.session_transaction() as session:
            assert ("error", ERRORS[name].message) in session.pop("_flashes", [])
        block = web.post(f"/with/{name}/7")
        assert block.status_code == 302 and block.headers["Location"].endswith("/landing/8"), name


def test_an_unknown_object_stays_404_unless_the_view_says_otherwise(fresh_app, browser):  # noqa: F811
    web = browser(target=app_with_named_destinations(fresh_app))
    for prefix in ("deco", "with"):
        page = web.post(f"/{prefix}/missing/7")
        assert page.status_code == 404 and page.mimetype == "text/html", prefix
    flashed = web.post("/missing/missing/7")
    assert flashed.status_code == 302 and flashed.headers["Location"].endswith("/landing/7")
    with web.session_transaction() as session:
        assert ("error", "no such thing") in session.get("_flashes", [])


def test_a_json_client_gets_the_json_error_not_the_redirect(fresh_app, browser):  # noqa: F811
    web = browser(target=app_with_named_destinations(fresh_app))
    for name, status in (("conflict", 409), ("invalid", 400), ("refused", 403), ("missing", 404)):
        answer = web.post(f"/deco/{name}/7", headers={"Accept": "application/json"})
        assert answer.status_code == status and answer.get_json()["error"]["code"] == ERRORS[name].code, name


def test_the_forbidden_page_says_why(fresh_app, browser):  # noqa: F811
    web = browser(target=app_with_raising_routes(fresh_app))
    page = web.get("/raise/refused")
    assert page.status_code == 403 and "not yours" in page.get_data(as_text=True)


def test_api_refusals_carry_the_services_message_and_fields(fresh_app, browser):  # noqa: F811
    application = fresh_app()
    error = DomainError("Check the fields.", code="invalid_input")
    error.fields = {"name": "Too long.", "numbers": ["Not a number.", "Empty."]}  # type: ignore[attr-defined]

    def view():
        raise error
    application.add_url_rule("/api/v1/raise/fields", "api_raise_fields", public(view))
    application.add_url_rule("/api/v1/raise/missing-message", "api_raise_missing",
                             public(lambda: (_ for _ in ()).throw(NotFound("This export does not exist."))))
    web = browser(target=application)
    answer = web.get("/api/v1/raise/fields")
    assert answer.status_code == 400
    assert answer.get_json() == {"error": {"code": "invalid_input", "message": "Check the fields.",
                                           "fields": {"name": ["Too long."], "numbers": ["Not a number.", "Empty."]}}}
    missing = web.get("/api/v1/raise/missing-message")
    assert missing.status_code == 404
    assert missing.get_json() == {"error": {"code": "not_found", "message": "This export does not exist."}}


def test_views_leave_not_found_to_the_app():
    """No view turns NotFound into abort(404) itself, and no view catches a refusal only to flash
    it and redirect: that is app.py's handler (with refusals_go_to naming the page)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "blueprints"
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        if re.search(r"except NotFound:\s*\n\s*abort\(404\)", text):
            offenders.append(f"{path.name}: except NotFound: abort(404)")
        if re.search(r"except DomainError as exc:\s*\n\s*flash(?:_error)?\(exc(?:\.message)?[^\n]*\n"
                     r"\s*(?:return )?(?:redirect|_back|_detail)\(", text):
            offenders.append(f"{path.name}: except DomainError → flash → redirect")
    assert offenders == []
