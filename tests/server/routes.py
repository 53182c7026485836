"""The app's route table, for tests that call every route."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

PARAMETER = re.compile(r"\{[^}]+\}")


def endpoints(app: Litestar, *, filled: bool = True) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    """(method, path, handler) for every HTTP route of ``app`` but the pages (``tests/web``
    walks those); with ``filled``, each path parameter is an id no row has, else the path keeps
    its ``{name}`` placeholders."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.opt.get("page"):  # the pages: walked by tests/web with session cookies
                continue
            for method in sorted(handler.http_methods):
                if method in {"HEAD", "OPTIONS"}:
                    continue
                path = route.path_format
                yield method, fill(path) if filled else path, handler


def fill(path_format: str) -> str:
    """The path with every parameter replaced by an id no row has."""
    return PARAMETER.sub(lambda _: str(uuid.uuid4()), path_format)
