"""Tenant isolation on the partitioned ``spans`` table (PostgreSQL, migration 0012): the parent's
row-level security policy binds every read and write routed to a partition, and the app role
cannot reach a partition by its own name (it has no grant there)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy.exc import DBAPIError

from agentops_server.db.partitions import DEFAULT, partition_name
from tests.server.api import Client
from tests.server.test_tenancy import as_tenant, pg_client, pg_url, seeded_orgs

__all__ = ["pg_client", "pg_url"]  # the fixtures, used here by name

TODAY = dt.datetime.now(dt.UTC).date()


def test_reads_and_writes_through_the_parent_see_only_the_current_orgs_spans(
    pg_client: Client, pg_url: str
) -> None:
    acme, globex = seeded_orgs(pg_client, pg_url)

    seen, renamed = as_tenant(
        pg_url,
        acme.org_id,
        ["SELECT DISTINCT org_id FROM spans", "UPDATE spans SET name = 'mine' RETURNING org_id"],
    )

    assert seen == renamed == [acme.org_id]
    assert as_tenant(pg_url, globex.org_id, ["SELECT DISTINCT name FROM spans"]) == [["ask"]]


def test_a_span_written_for_another_org_is_refused_in_whatever_partition_it_lands(
    pg_url: str, pg_client: Client
) -> None:
    acme, globex = seeded_orgs(pg_client, pg_url)
    for started_at in (f"{TODAY}T12:00:00+00:00", "1999-01-01T00:00:00+00:00"):  # day, default
        insert = (
            "INSERT INTO spans (org_id, id, run_id, kind, name, status, started_at, tags, "
            f"attributes, events) VALUES ('{globex.org_id}', '{uuid.uuid4()}', "
            f"'{uuid.uuid4()}', 'tool', 'planted', 'ok', '{started_at}', '[]', '{{}}', '[]')"
        )
        with pytest.raises(DBAPIError, match="row-level security"):
            as_tenant(pg_url, acme.org_id, [insert])


@pytest.mark.parametrize("partition", [partition_name(TODAY), DEFAULT])
def test_the_app_may_not_read_a_partition_by_its_name(
    pg_client: Client, pg_url: str, partition: str
) -> None:
    acme, _ = seeded_orgs(pg_client, pg_url)

    with pytest.raises(DBAPIError, match="permission denied"):
        as_tenant(pg_url, acme.org_id, [f"SELECT org_id FROM {partition}"])
