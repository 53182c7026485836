"""The policies pages: the org's versions (the active one marked), a version with its diff
against any other, and an editor that validates a policy set and runs its table tests as a
save would, dry-runs it against recent calls, saves it; activation, rollback, deactivation.

Each action is the service ``/api/v1/policies`` calls (:mod:`agentops_server.services.
governance.policies`, :func:`~agentops_server.services.governance.policy_dry_run.dry_run`);
validating without saving runs the same checks a save runs first
(:func:`~agentops_server.services.governance.policy_checks.validated_document` and
:func:`~agentops_server.services.governance.policy_checks.checked_tests`). The editor takes
the document and its tests as JSON or YAML, the author's choice (the ``format`` field; the
pages take ``?format=yaml`` to show a version as YAML): both decode to the same document
(:mod:`~agentops_server.services.governance.policy_text`), which is stored as the API stores it.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from functools import partial
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import policies
from agentops_server.services.governance.policies import PoliciesChanged
from agentops_server.services.governance.policy_checks import checked_tests, validated_document
from agentops_server.services.governance.policy_dry_run import DryRunReport, dry_run
from agentops_server.services.governance.policy_text import (
    PolicyFormat,
    decoded,
    encoded,
    format_of,
    located,
)
from agentops_server.web.forms import fields_of
from agentops_server.web.pages import done, page

__all__ = ["PolicyPages"]

PATH = "/policies"
LISTED = 50
STARTER = {
    "name": "default",
    "rules": [
        {
            "id": "no-deletes",
            "match": {"kind": "tool", "name": "delete_*"},
            "outcome": "deny",
            "message": "Deleting is not allowed for agents.",
        }
    ],
}
"""What the editor starts from when the org has no version yet (docs/policies.md)."""
STARTER_TESTS = [
    {
        "name": "deletes are refused",
        "given": {"kind": "tool", "name": "delete_user"},
        "expect": {"outcome": "deny", "rule": "no-deletes"},
    }
]


@dataclasses.dataclass(frozen=True, slots=True)
class TestResult:
    """One table test as the editor shows it: passed, or what the policy decided instead."""

    __test__ = False  # not a pytest test class

    index: int
    name: str
    given: str
    expected: str
    failure: dict[str, Any] | None

    @property
    def passed(self) -> bool:
        """The policy decided what the test expects."""
        return self.failure is None


@dataclasses.dataclass(slots=True)
class EditorState:
    """The editor's fields and what the last action found."""

    document: str
    tests: str
    format: PolicyFormat = "json"
    """What ``document`` and ``tests`` are written in."""
    comment: str = ""
    activate: bool = False
    checked: bool = False
    """Validated (and the tests run): ``results`` is the outcome."""
    results: list[TestResult] = dataclasses.field(default_factory=list)
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    report: DryRunReport | None = None


class PolicyPages(Controller):
    """``/policies``: read with ``policies:read``, edit, dry-run and activate with
    ``policies:write``."""

    @get(PATH, guards=[requires(Permission.POLICIES_READ)])
    async def policies_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        start: Annotated[uuid.UUID | None, QueryParameter(query="from")] = None,
        shown: Annotated[PolicyFormat, QueryParameter(query="format")] = "json",
    ) -> Response[Any]:
        """The versions, and the editor (on the version ``from``, the active one, or the
        newest; in the ``format`` asked for)."""
        try:
            editor = await _editor_from(db_session, request.auth.org_id, start, shown)
        except Refused as exc:
            return await _render(request, db_session, None, exc)
        return await _render(request, db_session, editor)

    @post(PATH + "/validate", guards=[requires(Permission.POLICIES_WRITE)])
    async def validate(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Validate the document and run its table tests, as a save would; save nothing."""
        editor = _editor_of(await fields_of(request))
        try:
            document, tests = _parsed(editor)
            _check(editor, document, tests)
        except Refused as exc:
            _keep_problems(editor, exc)
            return await _render(request, db_session, editor, exc)
        return await _render(request, db_session, editor)

    @post(PATH + "/convert", guards=[requires(Permission.POLICIES_WRITE)])
    async def convert(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The editor's document and tests written in the format ``to`` (read in ``format``);
        nothing is validated or saved."""
        fields = await fields_of(request)
        editor = _editor_of(fields)
        try:
            document, tests = _parsed(editor)
        except Refused as exc:
            _keep_problems(editor, exc)
            return await _render(request, db_session, editor, exc)
        to = format_of(fields.get("to"))
        converted = EditorState(
            encoded(document, to), encoded(tests, to), to, editor.comment, editor.activate
        )
        return await _render(request, db_session, converted)

    @post(PATH + "/dry-run", guards=[requires(Permission.POLICIES_WRITE)])
    async def dry_run(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Replay recent calls through the active set and the candidate (the editor's
        document, or a saved ``version_id``): what would change."""
        fields = await fields_of(request)
        editor = _editor_of(fields)
        try:
            if fields.get("version_id"):
                version_id = _uuid(fields["version_id"])
                editor = await _editor_from(
                    db_session, request.auth.org_id, version_id, editor.format
                )
                editor.report = await dry_run(
                    db_session, request.auth.org_id, version_id=version_id, calls=_calls(fields)
                )
            else:
                document, _ = _parsed(editor)
                editor.report = await dry_run(
                    db_session, request.auth.org_id, document=document, calls=_calls(fields)
                )
        except Refused as exc:
            _keep_problems(editor, exc)
            return await _render(request, db_session, editor, exc)
        return await _render(request, db_session, editor)

    @post(PATH + "/versions", guards=[requires(Permission.POLICIES_WRITE)])
    async def save_version(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        policies_changed: NamedDependency[PoliciesChanged],
    ) -> Response[Any]:
        """Save the editor's document and tests as the next version (activated at once when
        asked)."""
        editor = _editor_of(await fields_of(request))
        try:
            document, tests = _parsed(editor)
            saved = await policies.save_version(
                db_session,
                request.auth,
                actor_of(request),
                document=document,
                tests=tests,
                comment=editor.comment.strip() or None,
                activate=editor.activate,
            )
        except Refused as exc:
            _keep_problems(editor, exc)
            return await _render(request, db_session, editor, exc)
        if editor.activate:
            await policies_changed(request.auth.org_id)
        return done(_shown_in(f"{PATH}/versions/{saved.id}", editor.format), "policy_saved")

    @get(PATH + "/versions/{version_id:uuid}", guards=[requires(Permission.POLICIES_READ)])
    async def version_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        version_id: Annotated[uuid.UUID, PathParameter()],
        against: Annotated[uuid.UUID | None, QueryParameter()] = None,
        shown: Annotated[PolicyFormat, QueryParameter(query="format")] = "json",
    ) -> Response[Any]:
        """One version: its document and tests (in the ``format`` asked for), and its diff
        against ``against`` (default: the version before)."""
        return await _render_version(request, db_session, version_id, against, shown=shown)

    @post(
        PATH + "/versions/{version_id:uuid}/activate",
        guards=[requires(Permission.POLICIES_WRITE)],
    )
    async def activate(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        policies_changed: NamedDependency[PoliciesChanged],
        version_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Make the version the active set."""
        shown = format_of((await fields_of(request)).get("format"))
        try:
            await policies.activate_version(db_session, request.auth, actor_of(request), version_id)
        except Refused as exc:
            return await _render_version(
                request, db_session, version_id, None, shown=shown, refusal=exc
            )
        await policies_changed(request.auth.org_id)
        return done(_shown_in(f"{PATH}/versions/{version_id}", shown), "policy_activated")

    @post(
        PATH + "/versions/{version_id:uuid}/rollback",
        guards=[requires(Permission.POLICIES_WRITE)],
    )
    async def rollback(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        policies_changed: NamedDependency[PoliciesChanged],
        version_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Save the version again as the next one, and activate it."""
        fields = await fields_of(request)
        shown = format_of(fields.get("format"))
        try:
            saved = await policies.rollback_to(
                db_session,
                request.auth,
                actor_of(request),
                version_id,
                fields.get("comment", "").strip() or None,
            )
        except Refused as exc:
            return await _render_version(
                request, db_session, version_id, None, shown=shown, refusal=exc
            )
        await policies_changed(request.auth.org_id)
        return done(_shown_in(f"{PATH}/versions/{saved.id}", shown), "policy_rolled_back")

    @post(PATH + "/deactivate", guards=[requires(Permission.POLICIES_WRITE)])
    async def deactivate(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        policies_changed: NamedDependency[PoliciesChanged],
    ) -> Response[Any]:
        """Stop enforcing a policy set from the hub."""
        try:
            await policies.deactivate(db_session, request.auth, actor_of(request))
        except Refused as exc:
            return await _render(request, db_session, None, exc)
        await policies_changed(request.auth.org_id)
        return done(PATH, "policy_deactivated")


# -- the editor --------------------------------------------------------------------------------


def _editor_of(fields: dict[str, str]) -> EditorState:
    return EditorState(
        document=fields.get("document", ""),
        tests=fields.get("tests", ""),
        format=format_of(fields.get("format")),
        comment=fields.get("comment", ""),
        activate=fields.get("activate") == "yes",
    )


async def _editor_from(
    session: AsyncSession,
    org_id: uuid.UUID,
    version_id: uuid.UUID | None,
    format: PolicyFormat = "json",
) -> EditorState:
    """The editor on a saved version: ``version_id``, else the active one, else the newest;
    the starter set for an org with none; written in ``format``."""
    if version_id is None:
        status = await policies.policy_status(session, org_id)
        version_id = status.active_id
        if version_id is None and status.latest_number:
            version_id = (await policies.list_versions(session, org_id, limit=1)).items[0].id
    if version_id is None:
        return EditorState(encoded(STARTER, format), encoded(STARTER_TESTS, format), format)
    found = await policies.get_version(session, org_id, version_id)
    document = {key: value for key, value in found.document.items() if key != "version"}
    return EditorState(encoded(document, format), encoded(found.table_tests, format), format)


def _parsed(editor: EditorState) -> tuple[Any, Any]:
    """The document and the tests, decoded from the editor's format (``invalid_json`` or
    ``invalid_yaml``, with the line and column)."""
    document = decoded(editor.document, editor.format, "document")
    tests = decoded(editor.tests, editor.format, "tests") if editor.tests.strip() else []
    return document, tests


def _check(editor: EditorState, document: Any, tests: Any) -> None:
    """Validate and run the tests as a save does; the results on ``editor``."""
    policy = validated_document(document)
    try:
        checked_tests(policy, tests)
    except Invalid as exc:
        if exc.code != "policy_tests_failed":
            raise
        editor.checked = True
        editor.results = _results(tests, exc.extra["failures"])
        raise
    editor.checked = True
    editor.results = _results(tests, [])


def _keep_problems(editor: EditorState, refusal: Refused) -> None:
    """What a refusal points at, for the editor: its errors (at their line in the author's
    text), or the failing tests."""
    editor.errors = located(
        list(refusal.extra.get("errors", [])),
        {"document": editor.document, "tests": editor.tests},
    )
    if refusal.code == "policy_tests_failed" and not editor.results:
        try:
            tests = decoded(editor.tests or "[]", editor.format, "tests")
        except Invalid:
            return
        editor.checked = True
        editor.results = _results(tests, refusal.extra["failures"])


def _results(tests: Any, failures: list[dict[str, Any]]) -> list[TestResult]:
    failed = {failure["index"]: failure for failure in failures}
    return [
        TestResult(
            index=index,
            name=str(test.get("name", "")),
            given=json.dumps(test.get("given"), sort_keys=True),
            expected=json.dumps(test.get("expect"), sort_keys=True),
            failure=failed.get(index),
        )
        for index, test in enumerate(tests if isinstance(tests, list) else [])
        if isinstance(test, dict)
    ]


def _calls(fields: dict[str, str]) -> int:
    value = fields.get("calls") or "1000"
    try:
        return int(value)
    except ValueError:
        raise Invalid("invalid_dry_run", f"calls is a whole number, not {value!r}.") from None


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid("invalid_dry_run", f"{value!r} is not a version id.") from None


def _shown_in(path: str, format: PolicyFormat) -> str:
    """``path`` showing the version in ``format`` (JSON, the pages' default, needs no query)."""
    return f"{path}?format={format}" if format != "json" else path


# -- rendering ---------------------------------------------------------------------------------


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    editor: EditorState | None,
    refusal: Refused | None = None,
) -> Response[Any]:
    if refusal is not None:
        await db_session.rollback()
    org_id = request.auth.org_id
    response = await page(
        request,
        db_session,
        "policies.html",
        status=await policies.policy_status(db_session, org_id),
        versions=(await policies.list_versions(db_session, org_id, limit=LISTED)).items,
        editor=editor or await _editor_from(db_session, org_id, None),
        error=refusal,
    )
    response.status_code = refusal.status if refusal else 200
    return response


async def _render_version(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    version_id: uuid.UUID,
    against: uuid.UUID | None,
    *,
    shown: PolicyFormat = "json",
    refusal: Refused | None = None,
) -> Response[Any]:
    if refusal is not None:
        await db_session.rollback()
    org_id = request.auth.org_id
    try:
        found = await policies.get_version(db_session, org_id, version_id)
        diff = await policies.diff_versions(db_session, org_id, version_id, against)
    except Refused as exc:
        return await _render(request, db_session, None, refusal or exc)
    response = await page(
        request,
        db_session,
        "policy_version.html",
        version=found,
        diff=diff,
        against=against,
        versions=(await policies.list_versions(db_session, org_id, limit=LISTED)).items,
        shown=shown,
        document=encoded(found.document, shown),
        tests=encoded(found.table_tests, shown),
        pretty=partial(encoded, format=shown),
        error=refusal,
    )
    response.status_code = refusal.status if refusal else 200
    return response
