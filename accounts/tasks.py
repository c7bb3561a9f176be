"""django-q2 tasks of accounts: thin, each calling one service."""

from .roster import roster_sync_from_api


def roster_sync():
    """The scheduled OneRoster REST sync (ONEROSTER_* settings); returns the report's summary line."""
    report = roster_sync_from_api()
    return "refused: " + "; ".join(map(str, report.problems[:20])) if report.refused else report.summary()
