from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class ItemsOut(BaseModel, Generic[T]):
    """A list response; an object rather than a bare array so fields can be added later."""

    items: list[T]


class Page(ItemsOut[T], Generic[T]):
    """One page of a list: `items` from `offset` on, at most `limit` of them, out of `total`."""

    total: int = Field(description="How many items match, over all pages")
    limit: int = Field(description="The most items one page holds")
    offset: int = Field(description="How many matching items come before this page")
