"""The Spread day plan arithmetic: round-robin over the window, day sizes differ by at most one."""
from collections import Counter
from datetime import date

import pytest

from services.errors import DomainError
from services.spread import day_for, day_sizes, window_days


@pytest.mark.parametrize("total, days", [(0, 3), (1, 3), (10, 3), (10, 10), (7, 30), (1_000_003, 7)])
def test_day_sizes_differ_by_at_most_one(total, days):
    sizes = day_sizes(total, days)
    assert len(sizes) == days and sum(sizes) == total and max(sizes) - min(sizes) <= 1


def test_round_robin_matches_day_sizes():
    first = date(2030, 2, 27)
    days = window_days(first, date(2030, 3, 3))
    assert days == 5
    counts = Counter(day_for(rank, first, days) for rank in range(23))
    assert sorted(counts.values(), reverse=True) == day_sizes(23, days)
    assert min(counts) == first and max(counts) == date(2030, 3, 3)


def test_window_must_be_set_and_ordered():
    with pytest.raises(DomainError):
        window_days(None, date(2030, 1, 1))
    with pytest.raises(DomainError):
        window_days(date(2030, 1, 2), date(2030, 1, 1))
    assert window_days(date(2030, 1, 1), date(2030, 1, 1)) == 1
