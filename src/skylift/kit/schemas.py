from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class ItemsOut(BaseModel, Generic[T]):
    """A list response; an object rather than a bare array so fields can be added later."""

    items: list[T]
