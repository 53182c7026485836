"""The org profile page: name, slug, plan, region, retention and the logo.

A change is :func:`~agentops_server.services.identity.orgs.update_profile` with only the fields
that differ from the profile shown, as ``PATCH /api/v1/org`` calls it (so an admin saving the
form unchanged does not touch the owners' plan and region); the logo is
:mod:`~agentops_server.services.identity.org_logos`, as ``PUT``/``DELETE /api/v1/org/logo``.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import org_logos, orgs
from agentops_server.services.identity.org_logos import LOGO_MAX_BYTES
from agentops_server.services.identity.orgs import OrgChanges, OrgProfile
from agentops_server.web.forms import fields_of, validated
from agentops_server.web.pages import done
from agentops_server.web.settings.tabs import render, settle

__all__ = ["OrgPages"]

PATH = "/settings"
EDITABLE = ("name", "slug", "plan", "region", "retention_days")


class OrgPages(Controller):
    """``/settings``: read with ``settings:read``, change with ``settings:write`` (the plan and
    the region: owners, as the service decides)."""

    @get(PATH, guards=[requires(Permission.SETTINGS_READ)])
    async def org_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The org's profile."""
        return await _render(request, db_session)

    @post(PATH, guards=[requires(Permission.SETTINGS_WRITE)])
    async def update_org(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Change what the form changed; audited as ``org.updated``."""
        try:
            current = await orgs.get_profile(db_session, request.auth.org_id)
            changes = _changes(current, await fields_of(request))
            await orgs.update_profile(db_session, request.auth, actor_of(request), changes)
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "org_updated")

    @get(PATH + "/logo", guards=[requires(Permission.SETTINGS_READ)])
    async def logo(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[bytes]:
        """The uploaded logo (404 ``logo_not_found`` without one)."""
        logo = await org_logos.get_logo(db_session, request.auth.org_id)
        return Response(
            logo.data, media_type=logo.content_type, headers={"Cache-Control": "private, no-cache"}
        )

    @post(PATH + "/logo", guards=[requires(Permission.SETTINGS_WRITE)])
    async def upload_logo(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Keep the uploaded image as the org's logo; audited as ``org.logo_uploaded``."""
        upload = (await request.form()).get("logo")
        try:
            if not isinstance(upload, UploadFile):
                raise Invalid("invalid_form", "Choose an image to upload.")
            content = await upload.read(LOGO_MAX_BYTES + 1)
            await org_logos.set_logo(db_session, request.auth.org_id, actor_of(request), content)
        except Refused as exc:
            return await _render(request, db_session, exc)
        return done(PATH, "logo_uploaded")

    @post(PATH + "/logo/remove", guards=[requires(Permission.SETTINGS_WRITE)])
    async def remove_logo(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """Remove the logo (uploaded or URL); audited as ``org.logo_removed``."""
        await org_logos.delete_logo(db_session, request.auth.org_id, actor_of(request))
        return done(PATH, "logo_removed")


def _changes(current: OrgProfile, fields: dict[str, str]) -> OrgChanges:
    """The fields of the form that differ from ``current``."""
    wanted: dict[str, Any] = {
        name: fields[name].strip()
        for name in EDITABLE
        if name in fields and fields[name].strip() != str(getattr(current, name))
    }
    logo_url = fields.get("logo_url", "").strip()
    changed = "logo_url" in fields and logo_url != (current.logo_url or "")
    if changed and (logo_url or not current.logo_uploaded):  # a blank field keeps an upload
        wanted["logo_url"] = logo_url or None
    if not wanted:
        raise Invalid("nothing_changed", "The form changes nothing.")
    return validated(OrgChanges, wanted)


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
) -> Response[Any]:
    await settle(db_session, refusal)
    return await render(
        request,
        db_session,
        "settings/org.html",
        refusal,
        org=await orgs.get_profile(db_session, request.auth.org_id),
        plans=orgs.PLANS,
        regions=orgs.REGIONS,
        retention_range=(orgs.MIN_RETENTION_DAYS, orgs.MAX_RETENTION_DAYS),
        logo_max_kib=LOGO_MAX_BYTES // 1024,
    )
