"""The report page: a day's, week's or month's summary, made to print to PDF from the browser.

It is :func:`~agentops_server.services.analytics.reports.report` of
:func:`~agentops_server.services.analytics.reports.period_range`, as ``GET
/api/v1/reports/summary`` calls them (``analytics:read``). The stylesheet's ``@media print``
rules leave out the shell and the controls.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.auth.guards import requires
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.analytics import reports
from agentops_server.web.dashboard import compact, duration, usd
from agentops_server.web.pages import page

__all__ = ["ReportPages"]

PATH = "/reports"
PERIOD_NAMES = {"day": "Daily", "week": "Weekly", "month": "Monthly"}


class ReportPages(Controller):
    """``/reports`` (``analytics:read``)."""

    @get(PATH, guards=[requires(Permission.ANALYTICS_READ)])
    async def report_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The report of the ``period`` (``day``, ``week``, ``month``) holding the date ``at``
        (default: today, UTC); a period or date the service refuses shows why."""
        period = request.query_params.get("period") or "week"
        wanted = request.query_params.get("at") or ""
        refusal: Refused | None = None
        try:
            span = reports.period_range(period, _date(wanted))
        except Invalid as exc:
            refusal, period = exc, "week"
            span = reports.period_range(period, None)
        report = await reports.report(db_session, request.auth.org_id, period, span)
        last_day = span.end - dt.timedelta(days=1)
        response = await page(
            request,
            db_session,
            "reports.html",
            report=report,
            periods=PERIOD_NAMES,
            at=wanted if wanted and refusal is None else f"{span.start:%Y-%m-%d}",
            last_day=last_day,
            earlier=f"{PATH}?period={period}&at={(span.start - dt.timedelta(days=1)):%Y-%m-%d}",
            later=f"{PATH}?period={period}&at={span.end:%Y-%m-%d}",
            usd=usd,
            compact=compact,
            duration=duration,
            error=refusal,
        )
        response.status_code = refusal.status if refusal else 200
        return response


def _date(text: str) -> dt.datetime | None:
    """The day ``text`` names (``2026-12-07``), at noon UTC; None for no date.

    Refusal: ``invalid_date``."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise Invalid("invalid_date", f"{text!r} is not a date (YYYY-MM-DD).") from None
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
