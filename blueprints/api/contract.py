"""How an API view declares what it reads and what it answers: `use_body`, `use_query`, `respond`, `doc`.

Each decorator does its part at request time (parse and validate with a schema of
`blueprints/api/schemas/`, or dump the view's result through one) and leaves a note on the view
(`view._api`) from which `blueprints/api/spec.py` writes /api/v1/openapi.json. Views stay thin:
they receive validated plain values (`body=`, `query=`), call one service and return an object or
a dict. Bad input raises `InvalidInput` (a `DomainError`), which app.py's error handler answers as
`{"error": {"code", "message", "fields": {name: [messages]}}}` — never a 500.
"""
import functools
import json

from flask import Response, jsonify, request
from marshmallow import ValidationError

from services.errors import DomainError

BODY_CODE = "invalid_fields"   # a body field is wrong (the code POST /campaigns has always used)
QUERY_CODE = "invalid_query"   # a query parameter is wrong and declares no code of its own
MAX_NAMED = 8                  # fields named in the error message (the others are in `fields`)
MAX_FIELDS = 50                # fields listed in `fields`: unknown names come from the client, so
MAX_NAME = 100                 # neither their number nor their length is echoed unbounded


class InvalidInput(DomainError):
    """A request the schemas refuse: `fields` maps each wrong field to its messages."""

    code = BODY_CODE
    status = 400

    def __init__(self, message, fields=None, code=None, status=None):
        super().__init__(message, code=code, status=status)
        self.fields = dict(fields or {})


def error_fields(exc):
    """`fields` of an error as name → list of messages (services give one message per field)."""
    raw = getattr(exc, "fields", None) or {}
    return {name: list(msgs) if isinstance(msgs, (list, tuple)) else [str(msgs)] for name, msgs in raw.items()}


def flatten(messages, prefix=""):
    """marshmallow's nested error dict → {"smpp.ston": [...], "numbers.3": [...]} (JSON keys are strings)."""
    out = {}
    for key, value in messages.items():
        # "_schema": the value itself is wrong (not an object where one goes)
        name = (prefix[:-1] or "body") if key == "_schema" else f"{prefix}{key}"
        name = name if len(name) <= MAX_NAME else name[:MAX_NAME - 1] + "…"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = [str(m) for m in value] if isinstance(value, (list, tuple)) else [str(value)]
    return out


def _first_code(schema, messages, default):
    """The code declared (field metadata `code`) by the first wrong field in declaration order."""
    for name, field in schema.fields.items():
        if (field.data_key or name) in messages:
            return field.metadata.get("code", default)
    return default


def _message(fields):
    named = [f"{name}: {' '.join(msgs)}" for name, msgs in list(fields.items())[:MAX_NAMED]]
    more = len(fields) - len(named)
    return "Check the request: " + "; ".join(named) + (f"; and {more} more." if more > 0 else "")


def load(schema, data, default_code):
    try:
        return schema.load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        fields = dict(list(flatten(messages).items())[:MAX_FIELDS])
        raise InvalidInput(_message(fields), fields, code=_first_code(schema, messages, default_code)) from None


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def read_json_object(schema, required=True):
    """The request body as a dict, or InvalidInput / 415. Never `request.get_json()`: it lets a
    RecursionError (10,000 nested brackets) escape as a 500 and accepts NaN."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise InvalidInput(_hint(schema, "The request has no body."), code="invalid_json")
        return {}
    if request.mimetype and not request.is_json:
        raise DomainError(f"Send the body as JSON with Content-Type: application/json (not {request.mimetype}).",
                          code="unsupported_media_type", status=415)
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidInput(_hint(schema, "The JSON is nested too deeply."), code="invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4,300 digits
        raise InvalidInput(_hint(schema, f"The body is not valid JSON ({exc.__class__.__name__})."),
                           code="invalid_json") from None
    if not isinstance(body, dict):
        kind = "null" if body is None else type(body).__name__.replace("list", "an array").replace("str", "a string")
        raise InvalidInput(_hint(schema, f"The body is {kind}."), code="invalid_json")
    return body


def _hint(schema, what):
    required = [f.data_key or n for n, f in schema.fields.items() if f.required]
    names = ", ".join(required or [f.data_key or n for n, f in schema.fields.items()])
    return f"{what} Send a JSON object with {'the fields' if required else 'any of'}: {names}."


def _noted(wrapper, **notes):
    wrapper._api = {**getattr(wrapper, "_api", {}), **notes}
    return wrapper


_SCHEMAS: dict = {}


def _instance(schema_cls):
    if schema_cls not in _SCHEMAS:
        _SCHEMAS[schema_cls] = schema_cls()
    return _SCHEMAS[schema_cls]


def parse_body(schema_cls, required=True):
    """The JSON body validated by `schema_cls` (a dict), or InvalidInput. For a view that must refuse
    cheaper things first (size, rate); it declares the body with `@doc(..., body=schema_cls)`."""
    schema = _instance(schema_cls)
    return load(schema, read_json_object(schema, required), BODY_CODE)


def use_body(schema_cls, *, required=True):
    """Validate the JSON body with `schema_cls` and pass the loaded dict as `body=`.
    `required=False`: an empty body is `{}` (a body that is there is still checked)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            kwargs["body"] = parse_body(schema_cls, required)
            return view(*args, **kwargs)

        return _noted(wrapper, body=schema_cls, body_required=required)

    return decorate


def use_query(schema_cls):
    """Validate the query string with `schema_cls` and pass the loaded dict as `query=`. An empty
    parameter counts as not given; a declared one given twice is refused (which would the client mean?)."""
    schema = schema_cls()
    declared = {f.data_key or n for n, f in schema.fields.items()}

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            args_ = request.args
            repeated = {k: ["Give this parameter once."] for k in args_ if k in declared and len(args_.getlist(k)) > 1}
            if repeated:
                raise InvalidInput(_message(repeated), repeated,
                                   code=_first_code(schema, repeated, QUERY_CODE))
            given = {k: v for k, v in args_.items() if v != ""}  # `?page=&sort=` (a copied form URL): not given
            kwargs["query"] = load(schema, given, QUERY_CODE)
            return view(*args, **kwargs)

        return _noted(wrapper, query=schema_cls)

    return decorate


def respond(schema_cls, status=200, description=None):
    """Dump what the view returns — an object, a dict, or `(value, headers)` — through `schema_cls`
    as JSON with `status`. A Flask response (a file, an error) passes through unchanged."""
    schema = schema_cls()

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            result = view(*args, **kwargs)
            if isinstance(result, Response) or (isinstance(result, tuple) and isinstance(result[0], Response)):
                return result
            headers = None
            if isinstance(result, tuple):
                result, headers = result
            response = jsonify(schema.dump(result))
            response.status_code = status
            if headers:
                response.headers.update(headers)
            return response

        return _noted(wrapper, response=(status, schema_cls, description or schema_cls.__doc__ or ""))

    return decorate


def doc(summary, *, errors=None, path_values=None, path_schemas=None, responses=None, parameters=None,
        request_body=None, body=None, description=None):
    """Documentation only: a summary, what each error status means here, and — for what is not a
    JSON schema — raw OpenAPI pieces (a file response, a raw-body upload, a header parameter).
    `path_values={"action": (...)}` documents a variable path segment as one path per value,
    `path_schemas={"kind": {...}}` as one parameter with that schema;
    `body=Schema` declares the JSON body of a view that calls `parse_body(Schema)` itself;
    `description` is prose the OpenAPI description adds after the summary (spec.py adds who may call it)."""

    def decorate(view):
        notes = dict(summary=summary, errors=errors or {}, path_values=path_values or {},
                     path_schemas=path_schemas or {},
                     raw_responses=responses or {}, parameters=parameters or [], request_body=request_body,
                     description=description)
        if body is not None:
            notes.update(body=body, body_required=True)
        return _noted(view, **notes)

    return decorate
