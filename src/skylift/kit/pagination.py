"""Paged lists: every list endpoint takes `?limit=&offset=` and answers one page with its total.

Queries are ordered by id by their callers, so pages do not overlap or skip items while nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.interfaces import ORMOption

from skylift.kit.ids import ID_LIMIT
from skylift.kit.schemas import Page

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def answer(self, items: Sequence[T], total: int) -> Page[T]:
        """The page of `items` (already cut to this request) out of `total`."""
        return Page[T](items=list(items), total=total, limit=self.limit, offset=self.offset)


def page_request(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (at most {MAX_LIMIT})")
    ] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, lt=ID_LIMIT, description="Items to skip")] = 0,
) -> PageRequest:
    return PageRequest(limit=limit, offset=offset)


PageDep = Annotated[PageRequest, Depends(page_request)]


async def fetch_page(
    session: AsyncSession, query: Select[R], page: PageRequest, *options: ORMOption
) -> tuple[list[R], int]:
    """One page of an ordered one-entity query, and how many rows match in all.

    Loader `options` apply to the page only: the count runs on the bare query."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = await session.scalars(query.options(*options).limit(page.limit).offset(page.offset))
    return list(rows.all()), int(total or 0)
