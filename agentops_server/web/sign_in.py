"""The pages of signing up, in and out, and of switching org.

They call the services of ``POST /api/v1/auth/signup`` and ``/login`` (and are throttled the
same way); instead of tokens, the answer sets the session cookie
(:mod:`agentops_server.web.sessions`). A refusal shows the form again with its detail.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import client_of
from agentops_server.auth.guards import PUBLIC, requires
from agentops_server.auth.oauth import OAuthProviders
from agentops_server.backends.rate_limit import FailedAuthentications, Throttle, account_key
from agentops_server.refusals import Forbidden, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import accounts, sessions, sign_in_links
from agentops_server.services.identity.accounts import MfaChallenge
from agentops_server.services.identity.sessions import TokenPair
from agentops_server.settings import Settings
from agentops_server.web.forms import fields_of
from agentops_server.web.pages import NOTICES, done
from agentops_server.web.sessions import session_cookie, signed_out_cookie

__all__ = ["HOME", "SignInPages", "next_path"]

HOME = "/"
"""Where signing in leads: :meth:`SignInPages.home` picks the page."""
START_PAGES = (("/dashboard", Permission.ANALYTICS_READ), ("/controls", Permission.CONTROLS_READ))
"""A signed-in person's first page: the first of these their role may read."""


class SignInPages(Controller):
    """Sign-up, sign-in (with a second factor), sign-out and the org switcher."""

    @get("/", opt=PUBLIC)
    async def home(self, request: Request[Any, Any, Any]) -> Redirect:
        """The app for a signed-in person (the dashboard if their role may read it, else the
        controls; the query kept, such as a notice), the sign-in page for anyone else."""
        principal = request.scope.get("auth")
        if not isinstance(principal, Principal):
            return Redirect("/sign-in")
        start = next((path for path, needed in START_PAGES if principal.can(needed)), "/controls")
        query = request.url.query
        return Redirect(f"{start}?{query}" if query else start)

    @get("/sign-in", opt=PUBLIC)
    async def sign_in_form(
        self, request: Request[Any, Any, Any], oauth_providers: NamedDependency[OAuthProviders]
    ) -> Template:
        """The sign-in form (and a button per configured OAuth provider)."""
        return _form(
            "sign_in.html",
            next=next_path(request.query_params.get("next")),
            notice=NOTICES.get(request.query_params.get("done", "")),
            providers=_buttons(oauth_providers, request.query_params.get("next")),
        )

    @post("/sign-in", opt=PUBLIC)
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        oauth_providers: NamedDependency[OAuthProviders],
    ) -> Response[Any]:
        """Check the email and password; a second-factor step when the account has one."""
        form = await fields_of(request)
        email, after = form.get("email", ""), next_path(form.get("next"))
        try:
            async with throttle.attempt("login", account_key(email)):
                answer = await accounts.sign_in(
                    db_session,
                    settings,
                    email=email,
                    password=form.get("password", ""),
                    client=client_of(request),
                )
        except Refused as exc:
            providers = _buttons(oauth_providers, after)
            return _form("sign_in.html", exc, email=email, next=after, providers=providers)
        if isinstance(answer, MfaChallenge):
            return _form("second_factor.html", mfa_token=answer.mfa_token, next=after)
        return _signed_in(settings, answer, after)

    @post("/sign-in/second-factor", opt=PUBLIC)
    async def second_factor(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
    ) -> Response[Any]:
        """Finish signing in with a code of the second factor (or a recovery code)."""
        form = await fields_of(request)
        token, after = form.get("mfa_token", ""), next_path(form.get("next"))
        code = form.get("code", "").strip()
        totp = len(code) == 6 and code.isdigit()  # else a recovery code
        try:
            pending = accounts.read_mfa_token(settings, token)
            async with throttle.attempt("mfa", pending.user_id.hex):
                tokens = await accounts.finish_sign_in(
                    db_session,
                    settings,
                    pending,
                    code=code if totp else None,
                    recovery_code=None if totp else code,
                    client=client_of(request),
                )
        except Refused as exc:
            return _form("second_factor.html", exc, mfa_token=token, next=after)
        return _signed_in(settings, tokens, after)

    @get("/sign-up", opt=PUBLIC)
    async def sign_up_form(
        self, settings: NamedDependency[Settings], oauth_providers: NamedDependency[OAuthProviders]
    ) -> Template:
        """The sign-up form: a new org and its owner (or an OAuth provider's sign-in, which
        makes a personal org on first use while sign-up is open)."""
        providers = _buttons(oauth_providers, None) if settings.signup_open else []
        return _form("sign_up.html", open=settings.signup_open, providers=providers)

    @post("/sign-up", opt=PUBLIC)
    async def sign_up(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        oauth_providers: NamedDependency[OAuthProviders],
    ) -> Response[Any]:
        """Make the org and its owner, signed in."""
        form = await fields_of(request)
        fields = {key: form.get(key, "") for key in ("email", "name", "org_name")}
        try:
            if not settings.signup_open:
                raise Forbidden("signup_closed", "This hub makes accounts by invitation only.")
            await throttle.count("signup")
            signed_up = await accounts.signup(
                db_session,
                settings,
                password=form.get("password", ""),
                client=client_of(request),
                **fields,
            )
        except Refused as exc:
            providers = _buttons(oauth_providers, None) if settings.signup_open else []
            return _form(
                "sign_up.html", exc, open=settings.signup_open, providers=providers, **fields
            )
        return _signed_in(settings, signed_up.tokens, HOME)

    @post("/sign-out", guards=[requires(Permission.ACCOUNT)])
    async def sign_out(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Redirect:
        """End this session (the cookie and the hub session behind it)."""
        principal = request.auth
        user_id, session_id = principal.user_id, principal.session_id
        assert user_id is not None, "account:self is a person's permission"
        assert session_id is not None, "a page session is a hub session"
        await sessions.sign_out(db_session, principal.org_id, user_id, session_id)
        return Redirect("/sign-in", status_code=303, cookies=[signed_out_cookie(settings)])

    @post("/switch-org", guards=[requires(Permission.ACCOUNT)])
    async def switch_org(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Redirect:
        """A session in another of the person's orgs (this one stays open)."""
        principal = request.auth
        assert principal.user_id is not None
        wanted = (await fields_of(request)).get("org", "")
        await db_session.commit()  # switch_org runs as the user, then as the chosen org
        tokens = await accounts.switch_org(
            db_session, settings, principal.user_id, wanted, client=client_of(request)
        )
        redirect = done(HOME, "org_switched")
        redirect.set_cookie(session_cookie(settings, tokens))
        return redirect

    @get("/sign-in/link", opt=PUBLIC)
    async def sign_in_link_form(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings]
    ) -> Template:
        """The page of a one-time sign-in link (``agentops-hub demo`` prints one): a button, so
        that a link previewer that fetches the page does not use the link up."""
        token = request.query_params.get("token", "")
        try:
            sign_in_links.read_sign_in_link(settings, token)
        except Refused as exc:
            return _form("sign_in_link.html", exc)
        return _form("sign_in_link.html", token=token)

    @post("/sign-in/link", opt=PUBLIC)
    async def use_sign_in_link(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        auth_failures: NamedDependency[FailedAuthentications],
    ) -> Response[Any]:
        """Sign in with the link's token (once: a second use is refused)."""
        client = client_of(request)
        try:
            async with auth_failures.guard():
                tokens = await sign_in_links.use_sign_in_link(
                    db_session,
                    settings,
                    (await fields_of(request)).get("token", ""),
                    ip=client.ip,
                    user_agent=client.user_agent,
                )
        except Refused as exc:
            return _form("sign_in_link.html", exc)
        return _signed_in(settings, tokens, HOME)


def _buttons(providers: OAuthProviders, wanted: str | None) -> list[tuple[str, str]]:
    """(start path, label) of each configured OAuth provider, carrying ``next``."""
    query = f"?next={quote(next_path(wanted), safe='/')}" if wanted else ""
    return [(f"/sign-in/oauth/{provider.name}{query}", provider.label) for provider in providers]


def _signed_in(settings: Settings, tokens: TokenPair, after: str) -> Redirect:
    return Redirect(after, status_code=303, cookies=[session_cookie(settings, tokens)])


def _form(template: str, refusal: Refused | None = None, **context: Any) -> Template:
    """A public form page, with the refusal of the last attempt if any."""
    return Template(
        template_name=template,
        context={"error": refusal, **context},
        status_code=refusal.status if refusal else 200,
    )


def next_path(wanted: str | None) -> str:
    """Where to go after signing in: a path of this hub, never another site (``/`` too)."""
    if wanted and wanted.startswith("/") and not wanted.startswith(("//", "/\\")):
        return wanted
    return HOME
