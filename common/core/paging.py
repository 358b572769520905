"""Paginators: where the next page starts, as strategy objects the sources share (dlt's ``OffsetPaginator`` style).

A source asks :meth:`Paginator.params` for the next request's paging items, decodes the answer its own
way, then calls :meth:`Paginator.update_state` with what the page held and what the upstream announced;
``has_next`` says whether to ask again. The first announced total is the one kept (``total``): past the
end some APIs recalculate it, and a source compares later totals with it to see data change mid-paging.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Paginator(ABC):
    """The paging state of one request: ``has_next``, ``pages`` asked so far, the first announced ``total``."""

    def __init__(self) -> None:
        self.has_next = True
        self.pages = 0
        self.total: int | None = None

    @abstractmethod
    def params(self) -> dict[str, int]:
        """The paging items of the next request's query."""

    @abstractmethod
    def update_state(self, *, count: int, total: int | None) -> None:
        """Record one answer: ``count`` items on the page, ``total`` as announced (kept from the first page)."""


class OffsetPaginator(Paginator):
    """``offset``/``limit`` paging: the next offset is the items received so far; done at ``total`` or an empty page.

    ``omit_first_offset`` leaves ``offset=0`` out of the first request (for APIs whose recorded answers,
    or caches, key on the query as first asked).
    """

    def __init__(
        self,
        limit: int,
        *,
        offset: int = 0,
        offset_param: str = "offset",
        limit_param: str | None = "limit",
        omit_first_offset: bool = False,
    ) -> None:
        super().__init__()
        self.limit, self.offset = limit, offset
        self.offset_param, self.limit_param = offset_param, limit_param
        self.omit_first_offset = omit_first_offset

    def params(self) -> dict[str, int]:
        out = {} if self.omit_first_offset and self.pages == 0 else {self.offset_param: self.offset}
        return out | ({self.limit_param: self.limit} if self.limit_param else {})

    def update_state(self, *, count: int, total: int | None) -> None:
        self.pages += 1
        if self.total is None:
            self.total = total
        self.offset += count
        self.has_next = count > 0 and (self.total is None or self.offset < self.total)


class PageNumberPaginator(Paginator):
    """``page`` numbers from ``base_page``: done after the announced number of pages (``total``) or an empty page."""

    def __init__(self, *, base_page: int = 1, page_param: str = "page") -> None:
        super().__init__()
        self.page, self.page_param = base_page, page_param

    def params(self) -> dict[str, int]:
        return {self.page_param: self.page}

    def update_state(self, *, count: int, total: int | None) -> None:
        self.pages += 1
        if self.total is None:
            self.total = total
        self.has_next = count > 0 and (self.total is None or self.pages < self.total)
        if self.has_next:
            self.page += 1
