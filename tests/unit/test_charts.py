"""Server-rendered SVG charts: axis labels say something."""
import re
from datetime import UTC, datetime, timedelta

from services import charts

START = datetime(2026, 11, 25, 0, tzinfo=UTC)


def _axis_labels(svg):
    return re.findall(r'class="chart-axis">([^<]*)</text>', svg)


def test_an_empty_day_has_one_zero_line_label():
    rows = [(START + timedelta(hours=h), 0, 0) for h in range(24)]
    labels = _axis_labels(charts.hourly(rows))
    assert labels.count("0") == 1 and "" not in labels


def test_a_busy_day_labels_zero_half_and_peak():
    rows = [(START + timedelta(hours=h), 1000 if h == 5 else 10, 3) for h in range(24)]
    labels = _axis_labels(charts.hourly(rows))
    assert labels[:3] == ["0", "500", "1,000"]
