"""Read side of campaigns: the filtered, sorted, paginated list and the detail page's tabs.

The list runs one SELECT per page whatever its size (authors come in the same statement;
counters are columns, never COUNT(*) over recipients). Pagination is a bounded offset — pages
of PAGE_SIZE up to MAX_PAGES — walking an index on (workspace_id, sort key, id), so a page costs
the same at 100k campaigns; past the bound the page asks for a narrower filter.
"""
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import contains_eager, joinedload

import audit
from audit.store import AuditStoreUnavailable
from extensions import db
from models import Campaign, JobError, MessageError, SenderRevision, User
from models.campaigns import MODES, STATUSES
from services import permissions, recipients
from services.errors import DomainError

PAGE_SIZE = 50
MAX_PAGES = 200
SORTS = {
    "created": lambda: Campaign.created_at,
    "sender": lambda: Campaign.saddr,
    "start": lambda: func.coalesce(Campaign.started_at, Campaign.start_at),
}
ARCHIVED_CHOICES = ("", "1", "all")   # hidden (default) | archived only | both
ID_QUERY = re.compile(r"^#?(\d{1,9})$")


@dataclass
class ListFilters:
    date_from: date | None = None
    date_to: date | None = None
    status: str = ""
    mode: str = ""
    q: str = ""
    archived: str = ""
    sort: str = "created"
    direction: str = "desc"
    page: int = 1
    errors: dict = field(default_factory=dict)

    def as_args(self, **override):
        """Query-string arguments for links (sorting, paging) keeping the other filters."""
        args = {"from": self.date_from.isoformat() if self.date_from else None,
                "to": self.date_to.isoformat() if self.date_to else None,
                "status": self.status or None, "mode": self.mode or None, "q": self.q or None,
                "archived": self.archived or None, "sort": self.sort, "dir": self.direction, "page": self.page}
        args.update(override)
        return {k: v for k, v in args.items() if v not in (None, "")}


def parse_filters(args):
    """ListFilters from query arguments; bad values are dropped and reported in `errors`."""
    f = ListFilters()
    for key, attr in (("from", "date_from"), ("to", "date_to")):
        raw = (args.get(key) or "").strip()
        if raw:
            try:
                setattr(f, attr, date.fromisoformat(raw))
            except ValueError:
                f.errors[key] = f"“{raw}” is not a date; use YYYY-MM-DD."
    if f.date_from and f.date_to and f.date_from > f.date_to:
        f.errors["to"] = "The period ends before it starts; swap the dates."
        f.date_to = None
    status = (args.get("status") or "").strip()
    if status and status not in STATUSES:
        f.errors["status"] = f"Unknown status; use one of {', '.join(STATUSES)}."
    else:
        f.status = status
    mode = (args.get("mode") or "").strip()
    if mode and mode not in MODES:
        f.errors["mode"] = f"Unknown mode; use one of {', '.join(MODES)}."
    else:
        f.mode = mode
    f.q = (args.get("q") or "").strip()[:60]
    archived = (args.get("archived") or "").strip()
    f.archived = archived if archived in ARCHIVED_CHOICES else ""
    sort = (args.get("sort") or "created").strip()
    f.sort = sort if sort in SORTS else "created"
    f.direction = "asc" if (args.get("dir") or "").strip() == "asc" else "desc"
    try:
        f.page = max(1, int(args.get("page") or 1))
    except ValueError:
        f.page = 1
    return f


def _day_start_utc(day, tz):
    return datetime.combine(day, time.min, tzinfo=tz)


def _filtered(workspace, membership, user, f):
    query = select(Campaign).where(Campaign.workspace_id == workspace.id)
    if not permissions.allowed("campaigns.view_all", membership, superadmin=user.is_superadmin):
        query = query.where(Campaign.author_id == user.id)
    if f.archived == "":
        query = query.where(Campaign.archived_at.is_(None))
    elif f.archived == "1":
        query = query.where(Campaign.archived_at.isnot(None))
    tz = ZoneInfo(workspace.timezone or "UTC")
    if f.date_from:
        query = query.where(Campaign.created_at >= _day_start_utc(f.date_from, tz))
    if f.date_to:
        query = query.where(Campaign.created_at < _day_start_utc(f.date_to + timedelta(days=1), tz))
    if f.status:
        query = query.where(Campaign.status == f.status)
    if f.mode:
        query = query.where(Campaign.mode == f.mode)
    if f.q:
        match = ID_QUERY.match(f.q)
        pattern = "%" + f.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        by_sender = func.lower(Campaign.saddr).like(pattern, escape="\\")
        query = query.where(or_(Campaign.id == int(match.group(1)), by_sender) if match else by_sender)
    return query


def list_campaigns(workspace, membership, user, filters, page_size=None):
    """One page: (campaigns, has_next). Authors see their own; view_all sees the workspace's."""
    f = filters
    page_size = page_size or PAGE_SIZE
    if f.page > MAX_PAGES:
        raise DomainError(f"Only the first {MAX_PAGES} pages are shown; narrow the period, status or search.",
                          code="page_out_of_range")
    key = SORTS[f.sort]()
    # "No sender yet" / "not started" sorts as the greatest value (PostgreSQL's own NULL order, made
    # explicit for SQLite), so one btree index serves both directions by scanning it either way.
    if f.direction == "asc":
        order = [key.asc().nulls_last(), Campaign.id.asc()]
    else:
        order = [key.desc().nulls_first(), Campaign.id.desc()]
    query = (_filtered(workspace, membership, user, f)
             .outerjoin(User, User.id == Campaign.author_id)
             .options(contains_eager(Campaign.author))
             .order_by(*order).offset((f.page - 1) * page_size).limit(page_size + 1))
    rows = list(db.session.execute(query).unique().scalars())
    return rows[:page_size], len(rows) > page_size


# --- detail tabs -------------------------------------------------------------------------

@dataclass
class RecipientPageView:
    rows: list
    next_cursor: int | None = None
    total: int = 0


def recipients_page(campaign, after_id=None, limit=50, *, may_view_full=False, search=None):
    """A page of the Recipients tab (services.recipients owns the listing and the search rule).
    Rows carry the displayed (masked or full) number."""
    return recipients.list_recipients(campaign, after_id=after_id, limit=limit, may_view_full=may_view_full,
                                      search=search or None)


def job_errors(campaign, limit=100, *, may_view_full=False):
    """The Job errors tab: rows with the raw line masked unless the viewer may see full numbers."""
    return recipients.job_errors(campaign, limit=limit, may_view_full=may_view_full)


def detail_load_options():
    """For get_campaign(options=…): the detail page's author, sender revision and sender name come
    in the campaign's own statement instead of one lazy load each."""
    return (joinedload(Campaign.author), joinedload(Campaign.sender_revision).joinedload(SenderRevision.sender))


def error_counts(campaign):
    """(job errors, message errors) of a campaign, in one round trip."""
    return tuple(db.session.execute(select(
        select(func.count(JobError.id)).where(JobError.campaign_id == campaign.id).scalar_subquery(),
        select(func.count(MessageError.id)).where(MessageError.campaign_id == campaign.id).scalar_subquery())).one())


def message_errors(campaign, limit=100):
    return list(db.session.execute(select(MessageError).where(MessageError.campaign_id == campaign.id)
                                   .order_by(MessageError.id.desc()).limit(limit)).scalars())


def audit_events(campaign, limit=200):
    """This campaign's audit events, newest first (moderation notes included)."""
    try:
        events, _ = audit.get_store().find(workspace_id=campaign.workspace_id, object_type="campaign",
                                           object_id=str(campaign.id), limit=limit)
    except AuditStoreUnavailable:
        return None
    return events
