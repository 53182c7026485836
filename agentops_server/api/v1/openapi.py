"""What the OpenAPI schema says of the ``/api/v1`` routes beyond their types."""

from __future__ import annotations

import dataclasses

__all__ = ["ANYONE", "ProblemBody"]

ANYONE: list[dict[str, list[str]]] = [{}]
"""The ``security`` of a public route (``opt=PUBLIC``): it needs no credential."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProblemBody:
    """An RFC 9457 problem: ``code`` is stable, ``detail`` says what to do."""

    type: str
    title: str
    status: int
    detail: str
    code: str
