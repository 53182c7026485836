"""``/api/v1/org`` (the caller's org: profile, logo, deletion) and ``/api/v1/orgs`` (the orgs of
the signed-in person, and creating another one)."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import JSONBody, MultipartBody
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, problem_answer, problems
from agentops_server.api.v1.actors import actor_of, user_id_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound, TooLarge, Unsupported
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import org_logos, orgs
from agentops_server.services.identity.org_logos import LOGO_MAX_BYTES
from agentops_server.services.identity.orgs import (
    NewOrg,
    OrgChanges,
    OrgList,
    OrgProfile,
)
from agentops_server.values import Text

__all__ = ["OrgController", "OrgsController"]

_MULTIPART_OVERHEAD = 16 * 1024
"""Room for a multipart body's boundary and part headers around a logo of the largest size."""


class OrgDeletion(msgspec.Struct, forbid_unknown_fields=True):
    """Confirms deleting the org: ``confirm`` is the org's slug."""

    confirm: Text


@dataclasses.dataclass
class LogoUpload:
    """A ``multipart/form-data`` upload: the image in the field ``file``."""

    file: UploadFile


class OrgController(Controller):
    """The caller's org."""

    path = "/org"
    tags = ("orgs",)
    request_max_body_size = JSON_BODY_LIMIT

    @get("/", guards=[requires(Permission.SETTINGS_READ)], summary="The org's profile")
    async def get_org(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> OrgProfile:
        """Name, slug, plan, region, logo and creation time of the caller's org."""
        return await orgs.get_profile(db_session, request.auth.org_id)

    @patch(
        "/",
        guards=[requires(Permission.SETTINGS_WRITE)],
        summary="Change the org's profile",
        description=(
            "Only the fields sent change. `name`, `slug` and `logo_url` (an https URL, or null; "
            "setting one drops an uploaded logo) need `settings:write`; changing `plan` (one of "
            f"{', '.join(orgs.PLANS)}) or `region` (one of "
            f"{', '.join(orgs.REGIONS)}) needs an owner. `retention_days` "
            f"({orgs.MIN_RETENTION_DAYS} to {orgs.MAX_RETENTION_DAYS}): how long raw runs and "
            "spans are kept. Errors: 400 `invalid_name`, "
            "`invalid_slug`, `invalid_logo_url`, `invalid_plan`, `invalid_region`, "
            "`invalid_retention`, `validation_error`; 403 `owner_required`; 409 `slug_taken`."
        ),
        responses=problems(
            Invalid("invalid_retention", "retention_days outside the range kept"),
            Forbidden("owner_required", "the plan and the region are the owners'"),
            Conflict("slug_taken", "another org has the slug"),
        ),
    )
    async def update_org(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[OrgChanges],
    ) -> OrgProfile:
        """Apply the changes sent; audited as ``org.updated``."""
        return await orgs.update_profile(db_session, request.auth, actor_of(request), data)

    @delete(
        "/",
        guards=[requires(Permission.OWNERS_MANAGE)],
        summary="Delete the org, with everything in it",
        description=(
            'Owners only; send `{"confirm": "<the org\'s slug>"}` (400 `confirmation_required` '
            "otherwise). Every row of the org goes, its members' memberships and sessions, its "
            "API keys and its audit log included; the user accounts stay. Cannot be undone."
        ),
        responses=problems(Invalid("confirmation_required", "confirm is not the org's slug")),
    )
    async def delete_org(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[OrgDeletion | None] = None,
    ) -> None:
        """Delete the caller's org."""
        await orgs.delete_org(db_session, request.auth, data.confirm if data else None)

    @put(
        "/logo",
        guards=[requires(Permission.SETTINGS_WRITE)],
        summary="Upload the org's logo",
        description=(
            "A `multipart/form-data` body with the image in the field `file`: PNG, JPEG, WebP "
            f"or GIF (told by its content, not its declared type), at most {LOGO_MAX_BYTES} "
            "bytes. Replaces the logo URL. Errors: 413 `logo_too_large`, 415 "
            "`unsupported_logo_type`."
        ),
        request_max_body_size=LOGO_MAX_BYTES + _MULTIPART_OVERHEAD,
        exception_handlers={413: lambda request, _: _logo_too_large(request)},
        responses=problems(
            TooLarge("logo_too_large", "over 256 KiB"),
            Unsupported("unsupported_logo_type", "not a PNG, JPEG, WebP or GIF image"),
        ),
    )
    async def upload_logo(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        data: MultipartBody[LogoUpload],
    ) -> OrgProfile:
        """Keep the uploaded image as the org's logo; audited as ``org.logo_uploaded``."""
        content = await data.file.read(LOGO_MAX_BYTES + 1)
        await data.file.close()
        return await org_logos.set_logo(db_session, request.auth.org_id, actor_of(request), content)

    @get(
        "/logo",
        guards=[requires(Permission.SETTINGS_READ)],
        summary="The org's uploaded logo",
        description="The image, with its content type. 404 `logo_not_found` without an upload.",
        media_type="image/*",
        responses=problems(NotFound("logo_not_found", "the org has no uploaded logo")),
    )
    async def get_logo(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> Response[bytes]:
        """The uploaded logo's bytes."""
        logo = await org_logos.get_logo(db_session, request.auth.org_id)
        return Response(
            logo.data,
            media_type=logo.content_type,
            # An image, not a secret: the browser may keep it, revalidating each time.
            headers={"Cache-Control": "private, no-cache"},
        )

    @delete(
        "/logo",
        guards=[requires(Permission.SETTINGS_WRITE)],
        summary="Remove the org's logo",
        description="Removes the uploaded logo and the logo URL; without a logo, does nothing.",
    )
    async def delete_logo(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> None:
        """Remove the logo; audited as ``org.logo_removed``."""
        await org_logos.delete_logo(db_session, request.auth.org_id, actor_of(request))


class OrgsController(Controller):
    """The orgs of the signed-in person."""

    path = "/orgs"
    tags = ("orgs",)
    request_max_body_size = JSON_BODY_LIMIT
    guards = (requires(Permission.ACCOUNT),)

    @get("/", summary="My orgs")
    async def list_orgs(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> OrgList:
        """Every org the signed-in person belongs to, with their role in it."""
        return await orgs.list_orgs(db_session, user_id_of(request.auth))

    @post(
        "/",
        summary="Create another org",
        description=(
            "The signed-in person creates an org and becomes its owner. The slug defaults to one "
            "made from the name. To act in the new org, switch to it (`POST "
            "/api/v1/auth/switch-org`). Errors: 400 `invalid_name`, `invalid_slug`; 409 "
            "`slug_taken`."
        ),
        responses=problems(Conflict("slug_taken", "another org has the slug")),
    )
    async def create_org(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[NewOrg],
    ) -> OrgProfile:
        """Create an org owned by the caller; audited in it as ``org.created``."""
        return await orgs.create_org(db_session, user_id_of(request.auth), actor_of(request), data)


def _logo_too_large(request: Request[Any, Any, Any]) -> Response[Any]:
    """The body was cut off at its limit: the logo in it is too large."""
    return problem_answer(org_logos.logo_too_large(), request)
