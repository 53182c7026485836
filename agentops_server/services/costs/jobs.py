"""Recompute jobs: re-pricing a time range of an org's spans on demand, as queued work."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.models import PricingJob
from agentops_server.db.types import to_utc
from agentops_server.refusals import Invalid, NotFound
from agentops_server.services import audit
from agentops_server.services.costs.totals import RECOMPUTE
from agentops_server.values import Timestamp

__all__ = ["JobView", "RecomputeRange", "get_job", "request_recompute"]


class RecomputeRange(msgspec.Struct, forbid_unknown_fields=True, rename={"start": "from"}):
    """Spans that started at or after ``from`` and strictly before ``to`` (ISO 8601, naive: UTC)."""

    start: Timestamp
    to: Timestamp


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobView:
    """A recompute job and how it went (``queued``, ``done`` or ``failed``)."""

    id: uuid.UUID
    status: str
    range_from: dt.datetime
    range_to: dt.datetime
    spans_priced: int
    runs_totalled: int
    error: str | None
    requested_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


async def request_recompute(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: audit.Actor,
    wanted: RecomputeRange,
    *,
    requested_by: str,
    derived: DerivedWork,
) -> JobView:
    """Record a recompute job and hand it to derived work (audited ``pricing.recompute``)."""
    start, end = to_utc(wanted.start), to_utc(wanted.to)
    if end <= start:
        raise Invalid("invalid_range", "to must be after from")
    job = PricingJob(
        org_id=org_id,
        id=uuid.uuid4(),
        range_from=start,
        range_to=end,
        status="queued",
        spans_priced=0,
        runs_totalled=0,
        requested_by=requested_by[:320],
        created_at=dt.datetime.now(dt.UTC),
    )
    session.add(job)
    await audit.record(
        session,
        org_id,
        actor,
        "pricing.recompute",
        target_type="pricing_job",
        target_id=job.id,
        after={"from": start.isoformat(), "to": end.isoformat()},
    )
    notice = await derived.record(
        session, RECOMPUTE, {"org_id": str(org_id), "job_id": str(job.id)}
    )
    view = _view(job)
    await session.commit()
    await derived.dispatch(notice)
    return view


async def get_job(session: AsyncSession, org_id: uuid.UUID, job_id: uuid.UUID) -> JobView:
    """One of the org's recompute jobs (``job_not_found``)."""
    job = await session.get(PricingJob, (org_id, job_id), populate_existing=True)
    if job is None:
        raise NotFound("job_not_found", f"This org has no pricing job {job_id}.")
    return _view(job)


def _view(job: PricingJob) -> JobView:
    return JobView(
        id=job.id,
        status=job.status,
        range_from=to_utc(job.range_from),
        range_to=to_utc(job.range_to),
        spans_priced=job.spans_priced,
        runs_totalled=job.runs_totalled,
        error=job.error,
        requested_by=job.requested_by,
        created_at=to_utc(job.created_at),
        finished_at=None if job.finished_at is None else to_utc(job.finished_at),
    )
