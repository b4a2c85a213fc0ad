"""Property-based API testing from our own OpenAPI document (schemathesis): whatever a client sends
to any documented operation, with a valid token of the workspace's admin, the answer is never a
server error, its status is one the document lists, and its body matches the documented schema.
Twice: with data that fits the schemas (positive) and with data that violates them — wrong types,
nulls, missing or unknown fields, out-of-range values (negative); in negative mode a documented
operation must also refuse what its schema refuses (4xx), since the schemas are what validates."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from services import tokens
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace

CHECKS = {
    GenerationMode.POSITIVE: (not_a_server_error, status_code_conformance, response_schema_conformance),
    GenerationMode.NEGATIVE: (not_a_server_error, status_code_conformance, response_schema_conformance,
                              negative_data_rejection),
}
MAX_EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 10}  # 26 operations: the file stays < 60 s


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture
def admin_token(app):
    ws = make_workspace("fuzz")
    admin = make_user("fuzz-admin@example.com", workspace=ws, role="admin")
    author = make_user("fuzz-author@example.com", workspace=ws, role="author")
    make_campaign(ws, author, mode="Trigger", status="Sending", moderation="approved", sender=make_sender(ws))
    _, token = tokens.create_token(admin, ws, "schemathesis")
    return token


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_no_documented_operation_answers_with_a_server_error_or_off_its_spec(app, api_schema, admin_token, mode):
    # Each operation is driven by hypothesis directly (the schemathesis pytest plugin does not run
    # under pytest 9); a failure names the operation and the smallest failing request.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, "the OpenAPI document lists the API's operations"
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES[mode], deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {admin_token}"}
            response = case.call(app=app)
            case.validate_response(response, checks=CHECKS[mode])

        conforms()


def test_an_id_beyond_a_database_integer_is_not_found(client, admin_token):
    headers = {"Authorization": f"Bearer {admin_token}"}
    for url in ("/api/v1/campaigns/99999999999999999999", "/api/v1/uploads/2147483648"):
        response = client.get(url, headers=headers)
        assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
