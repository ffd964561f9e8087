"""Declarative base shared by every capability's models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast, overload

from sqlalchemy import BigInteger, DateTime, Index, Integer, MetaData, Table, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from skylift.kit import sealing

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# Ids (and every other whole number mapped without a type of its own) hold 64 bits, as the API accepts
# them: BIGINT on PostgreSQL; SQLite's INTEGER already holds 64 bits, and only a column declared
# INTEGER (not BIGINT) numbers its rows by itself.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {int: Id}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class SealedField:
    """A credential kept sealed in `column` (kit.sealing) and opened only when read.

    Opening costs tens of microseconds, so rows loaded in bulk (admission, lists) never pay for it;
    the opened value is remembered for the ciphertext it came from. With `digest`, setting the value
    also stores its keyed digest there, for lookups."""

    def __init__(self, column: str, digest: str | None = None) -> None:
        self.column = column
        self.digest = digest
        self.cache = f"_opened_{column}"

    def open(self, instance: object) -> str | None:
        sealed: str | None = getattr(instance, self.column)
        if sealed is None:
            return None
        cached: tuple[str, str] | None = instance.__dict__.get(self.cache)
        if cached is not None and cached[0] == sealed:
            return cached[1]
        value = sealing.keyring().open(sealed)
        instance.__dict__[self.cache] = (sealed, value)
        return value

    def store(self, instance: object, value: str | None) -> None:
        sealed = None if value is None else sealing.keyring().seal(value)
        setattr(instance, self.column, sealed)
        if sealed is not None and value is not None:
            instance.__dict__[self.cache] = (sealed, value)
        if self.digest is not None:
            setattr(instance, self.digest, None if value is None else sealing.keyring().digest(value))


class Sealed(SealedField):
    """A sealed credential that is always present."""

    @overload
    def __get__(self, instance: None, owner: type) -> Sealed: ...
    @overload
    def __get__(self, instance: object, owner: type) -> str: ...
    def __get__(self, instance: object | None, owner: type) -> Sealed | str:
        if instance is None:
            return self
        value = self.open(instance)
        if value is None:
            raise sealing.SealingError(f"{self.column} is empty")
        return value

    def __set__(self, instance: object, value: str) -> None:
        self.store(instance, value)


class SealedOrNone(SealedField):
    """A sealed value that may be absent."""

    @overload
    def __get__(self, instance: None, owner: type) -> SealedOrNone: ...
    @overload
    def __get__(self, instance: object, owner: type) -> str | None: ...
    def __get__(self, instance: object | None, owner: type) -> SealedOrNone | str | None:
        if instance is None:
            return self
        return self.open(instance)

    def __set__(self, instance: object, value: str | None) -> None:
        self.store(instance, value)


def table_of(model: type[Base]) -> Table:
    """A model's table, for statements over many rows that need none of the ORM's per-row work (a bulk
    INSERT through the ORM spends milliseconds per row checking each dict against the mapper)."""
    return cast(Table, model.__table__)


def unique_in_service(name: str, *columns: str) -> Index:
    """A unique index over rows not deleted (`deleted_at IS NULL`): a deleted row keeps its values as history."""
    live = text("deleted_at IS NULL")
    return Index(name, *columns, unique=True, sqlite_where=live, postgresql_where=live)
