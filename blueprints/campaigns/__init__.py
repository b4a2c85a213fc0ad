"""Campaign pages: the list, the five-step wizard, the detail page with its tabs, the actions.

Routes only: parse, call services/campaigns.py (lifecycle), campaign_drafts/ (wizard) or
campaign_queries.py (reads), render. One module per page group; all share `bp`.
"""
from flask import Blueprint

bp = Blueprint("campaigns", __name__, url_prefix="/w/<slug>/campaigns")

from blueprints.campaigns import detail, listing, wizard  # noqa: E402,F401  (routes register on bp)
