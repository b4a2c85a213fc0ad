"""Shared column helpers, and `Model`, the declarative base every table derives from."""
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.types import DateTime, TypeDecorator

from extensions import db

# `db.Model` under a name mypy can take as a base class (Flask-SQLAlchemy builds it at run time).
Model: Any = db.Model


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value
