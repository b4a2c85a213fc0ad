"""Reading the audit log: one filter parser shared by the audit pages and GET /api/v1/audit."""
from datetime import UTC, datetime, time

import audit
from services.errors import DomainError

FILTERS = ("actor", "action", "object_type", "object_id", "since", "until")


def _parse_when(value, end_of_day=False):
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").date()
            return datetime.combine(day, time.max if end_of_day else time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        raise DomainError(f"{value!r} is not a date; use YYYY-MM-DD or an ISO-8601 timestamp.",
                          code="invalid_date") from None


def parse_filters(args):
    """Query-string arguments -> keyword arguments for AuditStore.find (only the non-empty ones)."""
    filters = {name: (args.get(name) or "").strip() for name in FILTERS}
    out = {k: v[:200] for k, v in filters.items() if v and k not in ("since", "until")}
    if filters["since"]:
        out["since"] = _parse_when(filters["since"])
    if filters["until"]:
        out["until"] = _parse_when(filters["until"], end_of_day=True)
    return out


def search(filters, *, workspace_id=None, all_workspaces=False, cursor=None, limit=50):
    try:
        return audit.get_store().find(workspace_id=workspace_id, all_workspaces=all_workspaces, cursor=cursor or None,
                                      limit=max(1, min(int(limit), 500)), **filters)
    except ValueError:
        raise DomainError("The page cursor is not valid; start again from the first page.",
                          code="invalid_cursor") from None
