"""The named states of campaigns, uploads, exports and sender revisions, declared once as StrEnums.

Code compares with the names (`CampaignStatus.SENDING`), the models' CHECK constraints are
generated from the same enums (`check_in`), and the plain tuples (`models.campaigns.STATUSES`…)
forms and schemas use are derived from them. A StrEnum member equals its string value, so rows
read back from the database (plain strings) compare equal to the names.
"""
from enum import StrEnum


class CampaignStatus(StrEnum):
    NEW = "New"
    BUILDING = "Building"
    PENDING = "Pending"
    SENDING = "Sending"
    PAUSED = "Paused"
    DONE = "Done"
    CANCELLED = "Cancelled"
    FAILED = "Failed"
    EXPIRED = "Expired"


class Mode(StrEnum):
    ON_DEMAND = "OnDemand"
    ON_TIME = "OnTime"
    SPREAD = "Spread"
    TRIGGER = "Trigger"


class Moderation(StrEnum):
    AWAITING = "awaiting"
    APPROVED = "approved"
    REJECTED = "rejected"


class UploadState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ExportState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class RevisionState(StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    ARCHIVED = "archived"


# The names templates compare with (app.py puts them in the Jinja globals): `c.status == Status.NEW`.
TEMPLATE_NAMES = {"Status": CampaignStatus, "Mode": Mode, "Moderation": Moderation, "UploadState": UploadState,
                  "ExportState": ExportState, "RevisionState": RevisionState}


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The enum's values as plain strings, in declaration order."""
    return tuple(member.value for member in enum)


def check_in(column: str, enum: type[StrEnum]) -> str:
    """SQL for a CHECK constraint: `column IN ('a', 'b', …)` over the enum's values."""
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values(enum)) + ")"
