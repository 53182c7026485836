"""Reading the pages' forms into the request structs the services take, checked as the API
checks a JSON body (the kinds of :mod:`agentops_server.values` included)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from agentops_server.refusals import Invalid
from agentops_server.values import Text, Timestamp

__all__ = ["fields_of", "form_of", "validated"]

T = TypeVar("T")


async def form_of(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    """The submitted form's fields, each with every value sent (checkbox lists)."""
    form = await request.form()
    return {key: [str(value) for value in form.getall(key)] for key in form}


async def fields_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The submitted form's fields, the first value of each, as sent (passwords keep their
    spaces)."""
    return {key: values[0] for key, values in (await form_of(request)).items() if values}


def validated(kind: type[T], fields: dict[str, Any]) -> T:
    """``fields`` as the msgspec struct ``kind``; 400 ``invalid_form`` with the first mistake
    (or the code of the value kind that refused, such as ``invalid_text``)."""
    try:
        return msgspec.convert(fields, kind, strict=False, dec_hook=_decode_value)
    except msgspec.ValidationError as exc:
        raise Invalid("invalid_form", f"The form is not valid: {exc}") from exc


def _decode_value(kind: type[Any], value: Any) -> Any:
    if isinstance(kind, type) and issubclass(kind, Text) and isinstance(value, str):
        return kind(value)  # raises the kind's own refusal
    if isinstance(kind, type) and issubclass(kind, Timestamp):
        return kind.parse(value)
    raise NotImplementedError(f"no form decoding for {kind}")
