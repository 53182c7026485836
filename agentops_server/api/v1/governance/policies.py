"""``/api/v1/policies``: the org's policy set: immutable versions with their table tests,
activation, rollback, diffs, dry runs, and the effective set its SDKs load (see
docs/policies.md, "Policies on the hub").

``GET /api/v1/policies/effective`` answers the active set with its ``ETag``, or ``304`` to a
matching ``If-None-Match`` (API keys with the ``ingest`` scope may read it: an SDK polls with
its ingest key). Every change of the active set is pushed to the org's SDKs
(``policies_changed``, after the commit).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.policy import EffectivePolicy
from agentops_server.api.headers import etag_matches
from agentops_server.api.problems import problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import policies
from agentops_server.services.governance.policies import (
    PoliciesChanged,
    PolicyStatus,
    VersionDetail,
    VersionDiff,
    VersionList,
)
from agentops_server.services.governance.policy_dry_run import (
    DEFAULT_CALLS,
    DryRunReport,
    dry_run,
)
from agentops_server.values import Text

__all__ = ["PolicyController"]

POLICY_BODY_LIMIT = 1024 * 1024
"""The largest body the policy routes take: a set of up to 10,000 rules and its tests."""

VERSION_NOT_FOUND = NotFound("policy_version_not_found", "no such policy version in this org")
NOT_YOUR_TEAM = Forbidden(
    "not_your_team",
    "a team lead's change to a rule not scoped to their teams, or to the set's settings",
)
INVALID_POLICY = Invalid(
    "invalid_policy",
    "the document is not a valid policy set: `errors` lists each problem with its rule id, "
    "rule index, field (a JSON pointer into the document) and pointer into the body",
)
SAVE_REFUSALS = (
    INVALID_POLICY,
    Invalid("invalid_policy_tests", "the table tests are malformed: `errors` as above"),
    Invalid(
        "policy_tests_failed",
        "a table test fails against the document: `failures` lists each with what it expected "
        "and what the policy decided",
    ),
    NOT_YOUR_TEAM,
)


class NewVersion(msgspec.Struct, forbid_unknown_fields=True):
    """A policy set to save as the org's next version."""

    document: dict[str, Any]
    """The policy set (docs/policies.md); its ``version`` is set to the new version number."""
    tests: list[Any] = msgspec.field(default_factory=list)
    """Table tests: ``{"name", "given": {call facts}, "expect": outcome | {outcome, rule}}``."""
    comment: Text | None = None
    activate: bool = False
    """Make it the active set at once (after its tests pass)."""


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Why the org rolls back (default: ``rollback to version N``)."""

    comment: Text | None = None


class DryRunRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A candidate set (``document``, or a saved ``version_id``) to replay the last ``calls``
    recorded calls through."""

    document: dict[str, Any] | None = None
    version_id: uuid.UUID | None = None
    calls: int = DEFAULT_CALLS


class PolicyController(Controller):
    """Reading policies (``policies:read``; API keys with ``read``, ``controls:read`` or
    ``ingest``) and changing them (``policies:write``; team leads within their teams)."""

    path = "/policies"
    tags = ("policies",)
    request_max_body_size = POLICY_BODY_LIMIT

    @get("/", guards=[requires(Permission.POLICIES_READ)], summary="The org's policy head")
    async def status(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> PolicyStatus:
        """The newest and the active version, and the revision (the effective set's version)."""
        return await policies.policy_status(db_session, request.auth.org_id)

    @get(
        "/effective",
        guards=[requires(Permission.POLICIES_READ)],
        summary="The policy set the org's SDKs enforce",
        responses={
            200: ResponseSpec(
                EffectivePolicy,
                description="The effective set, with its ETag.",
                generate_examples=False,
            ),
            304: ResponseSpec(
                None, description="Not modified: `If-None-Match` holds the current ETag."
            ),
        },
    )
    async def effective(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> Response[bytes | None]:
        """The active set (`policy`, null when none is active) at the org's policy revision
        (`version`); `ETag` is `"<org_id>-policies-<version>"`, and a matching
        `If-None-Match` is answered `304` with no body."""
        org_id = request.auth.org_id
        asked = request.headers.get("if-none-match")
        if asked is not None:
            revision = await policies.policies_version(db_session, org_id)
            current = EffectivePolicy(org_id=org_id, version=revision).etag
            if etag_matches(asked, current):
                return Response(content=None, status_code=304, headers={"ETag": current})
        found = await policies.effective_policy(db_session, org_id)
        # Serialised by the contract itself: each rule as written (``in``, no defaults).
        return Response(
            content=found.to_json().encode(),
            media_type="application/json",
            headers={"ETag": found.etag},
        )

    @get("/versions", guards=[requires(Permission.POLICIES_READ)], summary="Policy versions")
    async def list_versions(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Annotated[int, QueryParameter(ge=1, le=policies.MAX_LISTED)] = 50,
        before: Annotated[int | None, QueryParameter(ge=1, le=2**31 - 1)] = None,
    ) -> VersionList:
        """Newest first; pass `next_before` back as `before` for the next page."""
        return await policies.list_versions(
            db_session, request.auth.org_id, limit=limit, before=before
        )

    @post(
        "/versions",
        guards=[requires(Permission.POLICIES_WRITE)],
        summary="Save a new policy version",
        description=(
            "Validated by the SDK's models; its table tests are run with the SDK's engine and "
            "any failure refuses the save. With `activate`, it becomes the active set at once "
            "and is pushed to the SDKs. Audited as `policy.version_saved` (and "
            "`policy.activated`) with the rule-by-rule diff."
        ),
        responses=problems(*SAVE_REFUSALS),
    )
    async def save_version(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        policies_changed: NamedDependency[PoliciesChanged],
        data: JSONBody[NewVersion],
    ) -> VersionDetail:
        """Save a version."""
        saved = await policies.save_version(
            db_session,
            request.auth,
            actor_of(request),
            document=data.document,
            tests=data.tests,
            comment=data.comment,
            activate=data.activate,
        )
        if data.activate:
            await policies_changed(request.auth.org_id)
        return saved

    @get(
        "/versions/{version_id:uuid}",
        guards=[requires(Permission.POLICIES_READ)],
        summary="One policy version",
        responses=problems(VERSION_NOT_FOUND),
    )
    async def get_version(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        version_id: FromPath[uuid.UUID],
    ) -> VersionDetail:
        """Its document and table tests."""
        return await policies.get_version(db_session, request.auth.org_id, version_id)

    @get(
        "/versions/{version_id:uuid}/diff",
        guards=[requires(Permission.POLICIES_READ)],
        summary="What a version changed",
        responses=problems(VERSION_NOT_FOUND),
    )
    async def diff_version(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        version_id: FromPath[uuid.UUID],
        against: Annotated[
            uuid.UUID | None, QueryParameter(description="The version to compare with.")
        ] = None,
    ) -> VersionDiff:
        """Rules added, removed and changed (and settings) since `against` (default: the
        version before)."""
        return await policies.diff_versions(db_session, request.auth.org_id, version_id, against)

    @post(
        "/versions/{version_id:uuid}/activate",
        status_code=200,
        guards=[requires(Permission.POLICIES_WRITE)],
        summary="Make a version the active set",
        description="Pushed to the SDKs. Audited as `policy.activated` with the diff.",
        responses=problems(
            VERSION_NOT_FOUND,
            Conflict("already_active", "the version is the active one"),
            NOT_YOUR_TEAM,
        ),
    )
    async def activate(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        policies_changed: NamedDependency[PoliciesChanged],
        version_id: FromPath[uuid.UUID],
    ) -> PolicyStatus:
        """Activate a version."""
        status = await policies.activate_version(
            db_session, request.auth, actor_of(request), version_id
        )
        await policies_changed(request.auth.org_id)
        return status

    @post(
        "/versions/{version_id:uuid}/rollback",
        guards=[requires(Permission.POLICIES_WRITE)],
        summary="Roll back to a version",
        description=(
            "Saves the version's document and tests again as the next version and activates "
            "it. Pushed to the SDKs. Audited as `policy.rolled_back` with the diff."
        ),
        responses=problems(VERSION_NOT_FOUND, SAVE_REFUSALS[2], NOT_YOUR_TEAM),
    )
    async def rollback(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        policies_changed: NamedDependency[PoliciesChanged],
        version_id: FromPath[uuid.UUID],
        data: JSONBody[RollbackRequest],
    ) -> VersionDetail:
        """Roll back."""
        saved = await policies.rollback_to(
            db_session, request.auth, actor_of(request), version_id, data.comment
        )
        await policies_changed(request.auth.org_id)
        return saved

    @delete(
        "/active",
        guards=[requires(Permission.POLICIES_WRITE)],
        summary="Stop enforcing a policy set from the hub",
        description=(
            "SDKs fall back to their local policy file, if any. Pushed to the SDKs. Audited "
            "as `policy.deactivated`."
        ),
        responses=problems(Conflict("no_active_policy", "no version is active"), NOT_YOUR_TEAM),
    )
    async def deactivate(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        policies_changed: NamedDependency[PoliciesChanged],
    ) -> None:
        """Deactivate."""
        await policies.deactivate(db_session, request.auth, actor_of(request))
        await policies_changed(request.auth.org_id)

    @post(
        "/dry-run",
        status_code=200,
        guards=[requires(Permission.POLICIES_WRITE)],
        summary="What a candidate set would change",
        description=(
            "Replays the org's last `calls` recorded calls (tool, LLM, step and agent spans; "
            "default 1,000, at most 10,000) through the active set and the candidate (a "
            "`document`, or a saved `version_id`) with the SDK's engine: counts and the first "
            "examples of calls newly denied, newly allowed, newly requiring approval and newly "
            "warned."
        ),
        responses=problems(
            INVALID_POLICY,
            Invalid(
                "invalid_dry_run", "neither or both of document and version_id; calls out of range"
            ),
            VERSION_NOT_FOUND,
        ),
    )
    async def dry_run(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[DryRunRequest],
    ) -> DryRunReport:
        """Dry-run a candidate."""
        return await dry_run(
            db_session,
            request.auth.org_id,
            document=data.document,
            version_id=data.version_id,
            calls=data.calls,
        )
