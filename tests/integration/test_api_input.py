"""API input that cannot crash it: what a careless or hostile client sends to /api/v1 — wrong types,
null, arrays, unknown fields, 10,000 nested brackets, integers past 64 bits, 1 MB strings, bad
cursors and parameters, the wrong content type, thirty such requests at once — is answered 400 (or
404/413/415) with a JSON error that names the field, and changes nothing. Also: the OpenAPI
document is generated from the same schemas (no hand-kept copy)."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from blueprints.api import API_MODULES
from extensions import db
from models import Campaign, Export, Recipient, SenderName
from services import tokens
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace

DEEP = 10_000


@pytest.fixture
def world():
    ws = make_workspace("acme")
    admin = make_user("admin@example.com", workspace=ws, role="admin")
    author = make_user("author@example.com", workspace=ws, role="author")
    sender = make_sender(ws, "ACME")
    draft = make_campaign(ws, author, sender=sender, status="Done", moderation="approved", archived=True)
    trigger = make_campaign(ws, author, mode="Trigger", status="Sending", moderation="approved", sender=sender)
    pending = make_sender(ws, "PEND", state="pending")
    _, token = tokens.create_token(admin, ws, "input tests")
    return {"ws": ws, "sender": sender, "draft": draft, "trigger": trigger, "pending": pending,
            "h": {"Authorization": f"Bearer {token}"}}


def counts():
    db.session.expire_all()
    return tuple(db.session.scalar(select(func.count()).select_from(m))
                 for m in (Campaign, SenderName, Export, Recipient))


def valid_campaign(world, **extra):
    return {"name": "OTP", "mode": "OnDemand", "sender_revision_id": world["sender"].id, "text": "Code 1234", **extra}


def refused(response, status=400, code=None):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.is_json
    error = response.get_json()["error"]
    assert error["message"] and error["code"]
    if code:
        assert error["code"] == code, error
    return error


def body_routes(world):
    """(method, url, a valid body) for every API route that reads a JSON body."""
    return [("post", "/api/v1/campaigns", valid_campaign(world)),
            ("post", "/api/v1/sender-names", {"name": "Brand", "saddr": "BRAND"}),
            ("post", f"/api/v1/sender-names/{world['sender'].sender_id}/revisions", {"saddr": "ACME2"}),
            ("post", f"/api/v1/campaigns/{world['draft'].id}/exports", {"format": "csv"}),
            ("post", f"/api/v1/campaigns/{world['trigger'].id}/recipients", {"numbers": ["491700000001"]}),
            ("post", f"/api/v1/moderation/sender_revision/{world['pending'].id}/reject", {"note": "no"}),
            ("post", f"/api/v1/campaigns/{world['draft'].id}/restore", {"owner_id": None})]


# --- the issue's example and its relatives -------------------------------------------------------

def test_the_issue_example_is_a_400_naming_each_field(client, world):
    before = counts()

    response = client.post("/api/v1/campaigns", headers=world["h"], json={"name": ["x"], "mode": 5, "text": None})

    error = refused(response, code="invalid_fields")
    assert error["fields"] == {"name": ["Not a valid string."], "mode": ["Not a valid string."],
                               "text": ["Field may not be null."],
                               "sender_revision_id": ["Missing data for required field."]}
    assert "name" in error["message"] and "mode" in error["message"]
    assert counts() == before


@pytest.mark.parametrize("field, value, message", [
    ("name", 7, "Not a valid string."),
    ("name", None, "Field may not be null."),
    ("name", {"a": 1}, "Not a valid string."),
    ("text", ["Code 1234"], "Not a valid string."),
    ("mode", "Fast", "Must be one of: OnDemand, OnTime, Spread, Trigger."),
    ("sender_revision_id", "1", "Not a valid integer."),
    ("sender_revision_id", 1.5, "Not a valid integer."),
    ("sender_revision_id", True, "Not a valid integer."),
    ("daily_limit", "100", "Not a valid integer."),
    ("daily_limit", False, "Not a valid integer."),
    ("auto_start", "yes", "Not a valid boolean."),
    ("auto_start", 1, "Not a valid boolean."),
    ("start_at", 1767225600, "Not a valid string."),
    ("smpp", "ACME", "Invalid input type."),
    ("colour", "red", "Unknown field."),
])
def test_a_wrongly_typed_or_unknown_field_is_named(client, world, field, value, message):
    before = counts()

    response = client.post("/api/v1/campaigns", headers=world["h"], json=valid_campaign(world, **{field: value}))

    error = refused(response, code="invalid_fields")
    assert error["fields"] == {field: [message]}
    assert counts() == before


def test_unknown_fields_are_not_echoed_without_bound(client, world):
    many = {f"k{i}" + "x" * 10_000: 1 for i in range(90)}

    response = client.post("/api/v1/campaigns", headers=world["h"], json=valid_campaign(world, **many))

    error = refused(response, code="invalid_fields")
    assert len(error["fields"]) == 50 and all(len(name) <= 100 for name in error["fields"])
    assert len(response.get_data()) < 20_000


def test_nested_smpp_errors_are_named_with_a_dotted_path(client, world):
    response = client.post("/api/v1/campaigns", headers=world["h"],
                           json=valid_campaign(world, smpp={"saddr": 5, "ston": "5", "dnpi": None, "x": 1}))

    assert refused(response)["fields"] == {"smpp.saddr": ["Not a valid string."],
                                           "smpp.ston": ["Not a valid integer."], "smpp.x": ["Unknown field."]}


@pytest.mark.parametrize("raw, what", [
    (b"null", "null"), (b"[]", "an array"), (b'"text"', "a string"), (b"42", "int"), (b"", "no body"),
    (b'{"name": "OTP",', "broken"), (b'{"daily_limit": NaN}', "NaN"), (b"\xff\xfe{", "not UTF"),
])
def test_a_body_that_is_not_a_json_object_is_invalid_json_on_every_route(client, world, raw, what):
    before = counts()
    for method, url, _ in body_routes(world):
        if raw == b"" and (url.endswith("/restore") or url.endswith("/recipients")):
            continue  # restore's body is optional; the Trigger push wants a Content-Length first (413)
        response = getattr(client, method)(url, headers=world["h"], data=raw, content_type="application/json")
        error = refused(response, code="invalid_json")
        assert "JSON object" in error["message"], (url, what)
    assert counts() == before


# --- nesting, big integers, big strings ----------------------------------------------------------

def nested(depth):
    return "[" * depth + "]" * depth


def test_ten_thousand_nested_brackets_are_a_400_as_body_or_in_a_field(client, world):
    before = counts()
    for method, url, body in body_routes(world):
        as_body = getattr(client, method)(url, headers=world["h"], data=nested(DEEP), content_type="application/json")
        assert "nested too deeply" in refused(as_body, code="invalid_json")["message"], url
        field = next(iter(body))
        in_field = json.dumps(body)[:-1] + f', "{field}": {nested(DEEP)}}}'
        response = getattr(client, method)(url, headers=world["h"], data=in_field, content_type="application/json")
        refused(response, code="invalid_json")
    # Deep, but within what the parser takes: the schema names the field.
    response = client.post("/api/v1/campaigns", headers=world["h"],
                           data=json.dumps(valid_campaign(world))[:-1] + f', "name": {nested(500)}}}',
                           content_type="application/json")
    assert refused(response, code="invalid_fields")["fields"] == {"name": ["Not a valid string."]}
    assert counts() == before


@pytest.mark.parametrize("big", [2**63, -2**63 - 1, 10**400])
def test_integers_past_64_bits_are_refused_by_field(client, world, big):
    before = counts()
    h = world["h"]
    campaign_fields = refused(client.post("/api/v1/campaigns", headers=h, json=valid_campaign(
        world, sender_revision_id=big, daily_limit=big, smpp={"ston": big, "dnpi": big})))["fields"]
    assert {"sender_revision_id"} <= set(campaign_fields)  # the schema bounds the id; the rest is the service's
    restore = client.post(f"/api/v1/campaigns/{world['draft'].id}/restore", headers=h, json={"owner_id": big})
    assert set(refused(restore, code="invalid_fields")["fields"]) == {"owner_id"}
    sender = client.post("/api/v1/sender-names", headers=h, json={"name": "Big", "saddr": "BIG", "ston": big})
    refused(sender, code="invalid_ton")
    # Past what Python converts (4,300 digits): the parser refuses it, still a 400.
    huge = client.post("/api/v1/campaigns", headers=h, content_type="application/json",
                       data=json.dumps(valid_campaign(world))[:-1] + ', "daily_limit": ' + "9" * 5000 + "}")
    refused(huge, code="invalid_json")
    assert counts() == before


def test_integers_past_64_bits_in_the_path_and_query(client, world):
    h, trigger = world["h"], world["trigger"]
    for url in (f"/api/v1/campaigns/{2**63}", f"/api/v1/campaigns/{2**63}/recipients", f"/api/v1/exports/{2**31}",
                f"/api/v1/uploads/{10**30}", f"/api/v1/sender-names/{2**63}"):
        refused(client.get(url, headers=h), 404, "not_found")
    refused(client.post(f"/api/v1/campaigns/{2**63}/pause", headers=h), 404, "not_found")
    assert client.get("/api/v1/campaigns/2147483647", headers=h).status_code == 404  # the largest id matches
    for url, code in ((f"/api/v1/campaigns/{trigger.id}/recipients?after={2**63}", "invalid_cursor"),
                      (f"/api/v1/campaigns/{trigger.id}/recipients?limit={-2**63 - 1}", "invalid_cursor"),
                      (f"/api/v1/audit?limit={2**63}", "invalid_limit"),
                      (f"/api/v1/campaigns?page={2**63}", "page_out_of_range")):
        refused(client.get(url, headers=h), 400, code)


@pytest.mark.parametrize("method, url, field, limit", [
    ("post", "/api/v1/campaigns", "name", 120),
    ("post", "/api/v1/campaigns", "text", 3060),
    ("post", "/api/v1/sender-names", "name", 80),
    ("post", "/api/v1/sender-names", "comment", 500),
    ("post", "/api/v1/sender-names", "saddr", 15),
    ("post", "reject", "note", 500),
])
def test_a_megabyte_where_a_short_string_goes_is_refused_with_a_length_message(client, world, method, url, field,
                                                                                 limit):
    before = counts()
    base = {"/api/v1/campaigns": valid_campaign(world), "/api/v1/sender-names": {"name": "Long", "saddr": "LONG"},
            "reject": {}}[url]
    if url == "reject":
        url = f"/api/v1/moderation/sender_revision/{world['pending'].id}/reject"

    response = getattr(client, method)(url, headers=world["h"], json={**base, field: "x" * 1_000_000})

    assert refused(response)["fields"] == {field: [f"Longer than maximum length {limit}."]}
    assert counts() == before


def test_a_body_over_the_request_limit_is_413_json(client, world):
    response = client.post("/api/v1/campaigns", headers=world["h"],
                           json=valid_campaign(world, name="x" * 3_000_000))
    refused(response, 413, "too_large")


# --- query parameters and cursors ----------------------------------------------------------------

@pytest.mark.parametrize("url, code, field", [
    ("/api/v1/audit?cursor=not-a-cursor", "invalid_cursor", None),
    ("/api/v1/audit?cursor=" + "A" * 5000, "invalid_cursor", "cursor"),
    ("/api/v1/audit?limit=0", "invalid_limit", "limit"),
    ("/api/v1/audit?limit=1.5", "invalid_limit", "limit"),
    ("/api/v1/audit?limit=1&limit=2", "invalid_limit", "limit"),
    ("/api/v1/campaigns?page=0", "invalid_page", "page"),
    ("/api/v1/campaigns?page=two", "invalid_page", "page"),
    ("/api/v1/campaigns?sort=password", "invalid_sort", "sort"),
    ("/api/v1/campaigns?dir=sideways", "invalid_dir", "dir"),
    ("/api/v1/campaigns?status=Sent", "invalid_status", "status"),
    ("/api/v1/campaigns?archived=maybe", "invalid_archived", "archived"),
    ("/api/v1/campaigns?from=yesterday", "invalid_from", "from"),
    ("/api/v1/moderation?kind=widgets", "invalid_kind", "kind"),
    ("/api/v1/sender-names?archived=perhaps", "invalid_query", "archived"),
    ("/api/v1/campaigns/{trigger}/recipients?after=abc", "invalid_cursor", "after"),
    ("/api/v1/campaigns/{trigger}/recipients?after=0", "invalid_cursor", "after"),
    ("/api/v1/campaigns/{trigger}/recipients?after=999999", "bad_cursor", None),
    ("/api/v1/campaigns/{trigger}/recipients?limit=501", "invalid_cursor", "limit"),
])
def test_bad_query_parameters_and_cursors_are_400_naming_the_parameter(client, world, url, code, field):
    response = client.get(url.format(trigger=world["trigger"].id), headers=world["h"])

    error = refused(response, 400, code)
    if field:
        assert set(error["fields"]) == {field}, error


def test_unknown_and_empty_query_parameters_are_ignored(client, world):
    response = client.get("/api/v1/campaigns?utm_source=mail&_=1700000000", headers=world["h"])
    assert response.status_code == 200 and "campaigns" in response.get_json()
    # The list page's filter form submits every field, empty ones too; a URL copied from it works.
    form_url = "/api/v1/campaigns?from=&to=&status=&mode=&q=&archived=&sort=&dir=&page="
    assert client.get(form_url, headers=world["h"]).get_json()["page"] == 1


# --- content type --------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_declared_json_is_415(client, world, content_type):
    before = counts()
    for method, url, body in body_routes(world):
        response = getattr(client, method)(url, headers=world["h"], data=json.dumps(body), content_type=content_type)
        refused(response, 415, "unsupported_media_type")
    assert counts() == before


def test_a_json_subtype_and_a_charset_are_json(client, world):
    response = client.post("/api/v1/campaigns", headers=world["h"], data=json.dumps(valid_campaign(world)),
                           content_type="application/vnd.api+json; charset=utf-8")
    assert response.status_code == 201, response.get_json()


# --- thirty at once --------------------------------------------------------------------------------

def test_thirty_hostile_requests_in_parallel_get_thirty_json_400s(app, world):
    h = world["h"]
    before = counts()
    hostile = [{"name": ["x"], "mode": 5, "text": None}, nested(DEEP), [1, 2], None, {"name": "x" * 200_000},
               {**valid_campaign(world), "sender_revision_id": 2**64}]

    def send(i):
        body = hostile[i % len(hostile)]
        raw = body if isinstance(body, str) else json.dumps(body)
        with app.test_client() as c:
            response = c.post("/api/v1/campaigns", headers=h, data=raw, content_type="application/json")
            return response.status_code, response.is_json and bool(response.get_json()["error"]["code"])

    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(send, range(30)))

    assert results == [(400, True)] * 30
    assert counts() == before


# --- the answers and the document ----------------------------------------------------------------

def test_the_campaign_answers_declare_the_reasons_and_the_fingerprint(client, world):
    spec = client.get("/api/v1/openapi.json").get_json()
    for name in ("CampaignSummary", "Campaign"):
        schema = spec["components"]["schemas"][name]
        props = schema.get("properties") or {}
        if "allOf" in schema:  # a subclass may be written as an extension
            props = {k: v for part in schema["allOf"] for k, v in part.get("properties", {}).items()}
        for field in ("failure_reason", "pause_reason", "approval_fingerprint"):
            assert props[field]["type"] == ["string", "null"], (name, field)

    body = client.get(f"/api/v1/campaigns/{world['trigger'].id}", headers=world["h"]).get_json()
    listed = client.get("/api/v1/campaigns?mode=Trigger", headers=world["h"]).get_json()["campaigns"][0]
    for answer in (body, listed):
        for field in ("failure_reason", "pause_reason", "approval_fingerprint"):
            assert field in answer and (answer[field] is None or isinstance(answer[field], str))


def test_the_document_is_generated_from_the_schemas(client, app):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    assert len(API_MODULES) == 9
    assert not [m.__name__ for m in API_MODULES if hasattr(m, "PATHS")], "no hand-kept paths"
    components = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
                assert components[ref]["additionalProperties"] is False, f"{method} {path} accepts unknown fields"
            for status, response in operation["responses"].items():
                content = response.get("content", {}).get("application/json")
                if content and path != "/api/v1/openapi.json":
                    assert "$ref" in content["schema"], f"{method} {path} {status} has no declared schema"
            if "{campaign_id}" in path or "{item_id}" in path:
                assert "404" in operation["responses"]
            assert "401" in operation["responses"] or operation.get("security") == []


def test_every_error_the_api_gives_has_the_documented_shape(client, world):
    spec = client.get("/api/v1/openapi.json").get_json()
    detail = spec["components"]["schemas"]["ErrorDetail"]
    response = client.post("/api/v1/campaigns", headers=world["h"], json={"mode": 5})
    error = response.get_json()["error"]
    assert set(error) <= set(detail["properties"]) and set(detail["required"]) <= set(error)
    assert all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in error["fields"].values())
    # A rule of the service (not the schema) answers in the same shape.
    rule = client.post("/api/v1/campaigns", headers=world["h"],
                       json=valid_campaign(world, sender_revision_id=world["pending"].id, daily_limit=-3))
    assert refused(rule, code="invalid_fields")["fields"]["daily_limit"][0].startswith("The daily limit")
