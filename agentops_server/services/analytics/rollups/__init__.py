"""Rollups: the hourly and daily totals the analytics APIs read, kept by derived work, run by run.

Each run's *contribution*, what it adds to the rows of the hour it started in (per key of every
dimension: counts, tokens, cost, latency buckets), is stored beside those rows
(:class:`~agentops_server.db.models.RollupContribution`), and the rows of an hour are the sum of
its runs' contributions. A task of the
:data:`~agentops_server.services.telemetry.ingest.EVENTS_COMMITTED` notice rolls up the runs its
commit touched (its runs and the runs of its spans: a span that arrives before its run is counted
when the run arrives, whose notice names it), a few hundred runs to a transaction:

1. it locks the :class:`~agentops_server.db.models.RollupBucket` rows of the hours those runs
   start in now and of the hours of their stored contributions, in time order (upserts: row
   locks on PostgreSQL, the database's write lock on SQLite), so two rollups of one hour take
   turns, and after step 2, if a run changed, of their days; no rollup locks runs or spans, so
   none can deadlock with ingest or run totals;
2. it reads, in new statements that see every committed row, those runs' stored contributions
   and their new ones from their own raw rows (only those runs, never the whole hour); when a
   run now needs an hour it did not lock (it moved meanwhile), it rolls back and starts again
   with that hour locked too;
3. for each run whose contribution changed (the others cost no write), it subtracts the old
   one from its hour's and day's rows and adds the new one (so a run that moved hour leaves
   its old hour), deletes the rows no run counts in any more, and stores the new contribution.

A duplicate, a retry or an event out of order leaves a run's raw rows as they were (no write) or
at their newest state, which the run's next rollup reads whole, under the lock that every change
to its contribution takes: the rows stay exactly what the raw rows add up to, whatever order
the rollups run in. Costs are read from the spans, priced in the ingest transaction, never from
the runs' totals (themselves derived work on PostgreSQL). Retention deletes a run's
contribution after its raw rows; a rollup of a run whose raw rows are gone changes nothing, and a
rebuild leaves the hours retention has begun on as they are, so rollups outlive the raw rows.

Hours rolled up before contributions existed (migration 0013) are rebuilt from their raw rows
the first time a rollup locks them; :func:`roll_up_range` re-rolls every run of a range and
rebuilds the range's rows from the contributions (a maintenance path).
See docs/decisions/0031-analytics-rollups.md.

- :mod:`.totals`: what a rollup row holds, and its buckets.
- :mod:`.contributions`: a run's contribution, from its raw rows, stored and summed.
- :mod:`.buckets`: one bucket's lock and rows: changed by differences, replaced, a day from its
  hours.
- :mod:`.incremental`: the derived-work tasks, rolling up the runs a commit touched.
- :mod:`.rebuild`: rebuilding a range (``agentops-hub analytics rebuild``).
"""

import logging

from agentops_server.services.analytics.rollups.buckets import roll_up_day
from agentops_server.services.analytics.rollups.contributions import Contribution
from agentops_server.services.analytics.rollups.incremental import RollupTasks, roll_up_runs
from agentops_server.services.analytics.rollups.rebuild import roll_up_range
from agentops_server.services.analytics.rollups.totals import (
    DAY,
    DIMENSIONS,
    HOUR,
    STORED,
    Totals,
    day_of,
    hour_of,
)

__all__ = [
    "DIMENSIONS",
    "STORED",
    "HOUR",
    "DAY",
    "Contribution",
    "RollupTasks",
    "Totals",
    "day_of",
    "hour_of",
    "roll_up_day",
    "roll_up_range",
    "roll_up_runs",
]
logger = logging.getLogger("agentops_server.analytics")
