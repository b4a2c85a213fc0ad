"""The API's schemas: every /api/v1 request and response body declared once, with marshmallow.

The same classes validate what a client sends (`blueprints/api/contract.py`: `use_body`,
`use_query`), shape what we answer (`respond`) and generate /api/v1/openapi.json (apispec's
MarshmallowPlugin), so the document cannot drift from the code. One module per area
(`campaigns.py`, `senders.py`, …); this one holds the base classes and the strict JSON fields.

Types are strict: JSON has types, and a number where a string goes (or `true` where a number
goes) is a client bug to report with the field's name, not a value to coerce. The schemas check
types, presence and size; the rules (an approved sender, a start in the future, a TON from 0 to
6) stay in `services/`, shared with the pages, and answer with their own codes.
"""
from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

DB_INT_MAX = 2**31 - 1     # an `Integer` column (ids of campaigns, uploads, users, sender revisions)
DB_BIGINT_MAX = 2**63 - 1  # a `BigInteger` column (recipient ids)
SHORT_TEXT = 200           # free-text query parameters (search, filters, cursors)


class Body(Schema):
    """A JSON request body. Unknown fields are refused (400 naming them): a misspelt optional
    field would otherwise be silently ignored and the client would never learn why."""

    class Meta:
        unknown = RAISE


class Query(Schema):
    """Query-string parameters. Unknown parameters are ignored (cache busters, tracking tags);
    every declared one is checked. Each field may name the error `code` that clients know it by."""

    class Meta:
        unknown = EXCLUDE


class Out(Schema):
    """A response body: `dump` shapes the object or dict a view returns into the documented fields."""


class StrictInteger(fields.Integer):
    """A JSON integer: strings, floats and booleans (`true` is an int in Python) are refused."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON boolean, nothing else (no "yes", 1 or "on")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def Id(maximum=DB_INT_MAX, **kwargs):  # noqa: N802 — a field factory reads like a field class
    """A database id in a body or query: a positive integer that fits the column (never a driver overflow)."""
    return StrictInteger(validate=validate.Range(min=1, max=maximum), **kwargs)


def Text(max_length, **kwargs):  # noqa: N802
    """A JSON string with an upper bound on its length (a 1 MB string is refused with a length message)."""
    return fields.String(validate=validate.Length(max=max_length), **kwargs)


class ErrorDetail(Out):
    code = fields.String(required=True, metadata={"description": "Stable machine-readable code"})
    message = fields.String(required=True, metadata={"description": "What was wrong, for a person"})
    field_errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), data_key="fields",
                         metadata={"description": "Invalid input: each wrong field (dotted path for nested "
                                                  "ones, e.g. smpp.ston or numbers.3) with its messages"})


class Error(Out):
    error = fields.Nested(ErrorDetail, required=True)


__all__ = ["Body", "Query", "Out", "StrictInteger", "StrictBoolean", "Id", "Text", "Error", "ErrorDetail",
           "DB_INT_MAX", "DB_BIGINT_MAX", "SHORT_TEXT", "EXCLUDE", "fields", "validate"]
