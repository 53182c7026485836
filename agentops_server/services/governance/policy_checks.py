"""What a policy version must pass before it is saved or made active: the SDK's validation of
the document, its table tests run with the SDK's engine, and a team lead's reach.

Refusals carry what a client needs to point at the problem: ``errors`` with the rule id, the
rule's index, a JSON pointer into the document (``field``) and into the request body
(``pointer``); ``failures`` with each failing table test, what it expected and what the policy
decided.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.errors import PolicyError
from agentops_sdk.contract.policy import PolicySet, parse_policy
from agentops_sdk.contract.policy_engine import compile_policy
from agentops_sdk.contract.policy_tests import parse_policy_tests, run_policy_tests
from agentops_server.db.models import Team
from agentops_server.refusals import Forbidden, Invalid
from agentops_server.security.permissions import Role
from agentops_server.security.principal import Principal
from agentops_server.services.governance.policy_diff import diff_documents

__all__ = ["check_reach", "checked_tests", "validated_document"]


def validated_document(document: Any, number: int | str = 0) -> PolicySet:
    """``document`` validated by the SDK's models, its ``version`` stamped with ``number``.

    Refusals: ``invalid_policy`` with ``errors``: one per problem, each with the ``rule`` id,
    the rule's ``index``, the ``field`` as a JSON pointer into the document, the ``pointer``
    into the request body (under ``/document``) and the ``message``.
    """
    if not isinstance(document, dict):
        raise Invalid("invalid_policy", "The policy document must be a JSON object.")
    try:
        return parse_policy({**document, "version": number})
    except PolicyError as exc:
        raise Invalid(
            "invalid_policy",
            str(exc),
            errors=[
                {
                    "rule": problem.rule,
                    "index": _rule_index(problem.field),
                    "field": problem.field,
                    "pointer": "/document" + problem.field,
                    "message": problem.message,
                }
                for problem in exc.problems
            ],
        ) from None


def checked_tests(policy: PolicySet, tests: Any) -> list[Any]:
    """The table tests, validated and passing against ``policy`` (as given, for storing).

    Refusals: ``invalid_policy_tests`` (``errors`` as for ``invalid_policy``, ``test`` naming
    the test, pointers under ``/tests``), ``policy_tests_failed`` (``failures``: each failing
    test's index, name, what it expected and what the policy decided).
    """
    try:
        parsed = parse_policy_tests(tests)
    except PolicyError as exc:
        raise Invalid(
            "invalid_policy_tests",
            str(exc),
            errors=[
                {
                    "test": problem.rule,
                    "field": problem.field,
                    "pointer": "/tests" + problem.field,
                    "message": problem.message,
                }
                for problem in exc.problems
            ],
        ) from None
    failures = run_policy_tests(compile_policy(policy), parsed)
    if failures:
        names = ", ".join(repr(failure.name) for failure in failures[:5])
        raise Invalid(
            "policy_tests_failed",
            f"{len(failures)} of the {len(parsed)} table tests fail ({names}); nothing was saved.",
            failures=[failure.to_json() for failure in failures],
        )
    return list(tests)


def _rule_index(field: str) -> int | None:
    parts = field.split("/")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "rules" and parts[2].isdigit() else None


async def check_reach(
    session: AsyncSession,
    principal: Principal,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """A team lead may change only rules scoped to teams they belong to (Forbidden
    ``not_your_team``); owners, admins and admin keys change any."""
    if principal.role is None or principal.role.rank <= Role.ADMIN.rank:
        return
    names = set(
        await session.scalars(
            select(Team.name).where(
                Team.org_id == principal.org_id, Team.id.in_(principal.team_ids)
            )
        )
    )
    diff = diff_documents(before, after)
    touched = [
        *diff["added"],
        *diff["removed"],
        *(change[side] for change in diff["changed"] for side in ("before", "after")),
    ]
    outside = sorted({str(rule.get("id")) for rule in touched if not _within(rule, names)})
    if outside or diff["settings"]:
        raise Forbidden(
            "not_your_team",
            "Team leads change only rules scoped to their own teams (scope.team); "
            f"these are not: {', '.join(outside) or 'the set settings'}.",
        )


def _within(rule: dict[str, Any], teams: set[str]) -> bool:
    scope = rule.get("scope") if isinstance(rule.get("scope"), dict) else {}
    team = scope.get("team") if scope else None
    listed = [team] if isinstance(team, str) else list(team or [])
    return bool(listed) and set(listed) <= teams
