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
