"""The declarative base of every model, and the column types they share."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    MetaData,
    Numeric,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

from agentops_server.db.types import UtcDateTime

__all__ = ["Base", "Json", "Moment", "Money"]


# None is SQL NULL (not JSON null) however a row is written, so IS NULL filters work.
Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Money = Numeric(20, 10)
Moment = UtcDateTime()


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can diff on both databases."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: Json,
        list[Any]: Json,
        Any: Json,
    }
