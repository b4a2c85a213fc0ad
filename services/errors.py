"""Typed domain errors, caught where a decision is made (a view turns them into a flash or JSON error)."""


class DomainError(Exception):
    """A refused action with a message a user can act on."""

    code = "invalid"
    status = 400
    # Where a page goes after this refusal (a flash there); set by the view that knows the page
    # (blueprints.refusals_go_to), read by app.py's handler. None: back to the page the form came from.
    redirect_to: str | None = None

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409
