"""How the hub decodes requests: each kind of value through its one check, JSON bodies with a
depth limit.

:class:`ValueKinds` (a Litestar plugin) teaches Litestar the kinds of
:mod:`agentops_server.values`: it decodes every ``Text``, ``Name`` and ``Timestamp`` of a body
or a query through the kind's check (a refusal is a ``400`` with the kind's code, answered by
:data:`~agentops_server.api.problems.REFUSALS`) and describes each in the OpenAPI schema.
:class:`HubRequest` decodes JSON bodies with :func:`~agentops_server.values.decode_json`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request
from litestar.config.app import AppConfig
from litestar.exceptions import SerializationException
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.plugins import InitPluginProtocol, OpenAPISchemaPlugin
from litestar.types import Empty
from litestar.typing import FieldDefinition
from litestar.utils import is_class_and_subclass

from agentops_server.values import Text, Timestamp, decode_json

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

__all__ = ["HubRequest", "ValueKinds"]


class ValueKinds(InitPluginProtocol, OpenAPISchemaPlugin):
    """Decode and describe :mod:`agentops_server.values`' kinds (add it to the app's plugins)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Register the kinds' decoders."""
        app_config.type_decoders = [
            *(app_config.type_decoders or []),
            (_is_text, _decode_text),
            (_is_timestamp, _decode_timestamp),
        ]
        return app_config

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        """Whether ``value`` is one of the kinds."""
        return _is_text(value) or _is_timestamp(value)

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        """The kind as an OpenAPI string schema, with its rules."""
        kind = field_definition.annotation
        if _is_timestamp(kind):
            return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME)
        return Schema(type=OpenAPIType.STRING, max_length=kind.max_length, pattern=kind.pattern())


class HubRequest(Request[Any, Any, Any]):
    """Litestar's request, decoding JSON bodies at most
    :data:`~agentops_server.values.MAX_JSON_DEPTH` levels deep (``400 json_too_deep``)."""

    async def json(self) -> Any:
        """The body decoded as JSON (``null`` when empty)."""
        if self._json is Empty:
            try:
                self._json = decode_json(await self.body() or b"null")
            except msgspec.DecodeError as exc:
                raise SerializationException(str(exc)) from exc
        return self._json


def _is_text(value: Any) -> bool:
    return is_class_and_subclass(value, Text)


def _is_timestamp(value: Any) -> bool:
    return is_class_and_subclass(value, Timestamp)


def _decode_text(kind: type[Text], value: Any) -> Text:
    if not isinstance(value, str):
        raise TypeError("Expected `str`")
    return kind(value)


def _decode_timestamp(kind: type[Timestamp], value: Any) -> Timestamp:
    return kind.parse(value)
