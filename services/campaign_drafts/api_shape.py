"""Draft values in the shape the API's JSON uses."""


def api_start_window(campaign):
    """(window_start, window_end) as ISO dates for JSON."""
    first, last = campaign.spread_first_day, campaign.spread_last_day
    return (first.isoformat() if first else None, last.isoformat() if last else None)
