"""Page iteration over DigitalOcean list responses, with completeness reporting.

Every listing requests `per_page=200`, the API's maximum. The next page is `links.pages.next`
when the response has it, used as given. Otherwise it is the same URL with `page` one higher,
until a short or empty page. Listings that report a total (`meta.total`, or the finding's
`affected_resources_count` passed in as `expected_total`) also stop once that many items arrived
and never fetch more than ceil(total / per_page) pages.

Paging stops early, and marks the collection incomplete, when a next URL repeats, points at
another origin (it would carry the token elsewhere), a page brings only items already seen, or
the page bound is reached. Items that repeat across pages are dropped and also mark it
incomplete, because a shifted listing can skip an item as easily as repeat one.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from yarl import URL

from service.digitalocean.models import Collected

T = TypeVar("T")

PER_PAGE = 200
# A listing without a total stops here: 2,000 pages of 200 is 400,000 items, far past any team.
MAX_PAGES = 2000


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One parsed page. `has_links` is whether `links.pages` named any page at all."""

    items: tuple[T, ...]
    next_url: str | None = None
    has_links: bool = False
    total: int | None = None


class StopPaging(Exception):
    """Raised by a page fetcher to end paging early; the message becomes a problem."""


FetchPage = Callable[[URL], Awaitable[Page[T]]]


class PageStream(Generic[T]):
    """Async iterator over the items of every page, usable once.

    After the iteration ends, `complete` and `problems` report whether the items are all there is.
    Errors of the fetcher (DigitalOceanError) propagate unchanged.
    """

    def __init__(
        self,
        fetch: FetchPage[T],
        first_url: URL,
        *,
        key: Callable[[T], str],
        subject: str,
        expected_total: int | None = None,
        per_page: int = PER_PAGE,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._fetch = fetch
        self._first_url = first_url
        self._key = key
        self._subject = subject
        self._total = expected_total
        self._per_page = per_page
        self._max_pages = max_pages
        self._seen_keys: set[str] = set()
        self._seen_urls: set[str] = set()
        self._problems: list[str] = []
        self._pages_fetched = 0
        self._started = False
        self._finished = False

    @property
    def complete(self) -> bool:
        """Whether paging ended normally with every item. False until the iteration ends."""
        return self._finished and not self._problems

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(self._problems)

    @property
    def count(self) -> int:
        """Distinct items yielded so far."""
        return len(self._seen_keys)

    def __aiter__(self) -> AsyncIterator[T]:
        if self._started:
            raise RuntimeError(f"the page stream of {self._subject} was already iterated")
        self._started = True
        return self._iterate()

    async def collect(self) -> Collected[T]:
        """Read every page and return the items with the completeness verdict."""
        items = [item async for item in self]
        return Collected(tuple(items), complete=self.complete, problems=self.problems)

    async def _iterate(self) -> AsyncIterator[T]:
        url: URL | None = self._first_url
        while url is not None:
            self._seen_urls.add(str(url))
            try:
                page = await self._fetch(url)
            except StopPaging as stop:
                self._problems.append(str(stop))
                break
            self._pages_fetched += 1
            if page.total is not None:
                self._total = page.total

            new_items = self._drop_repeats(page.items)
            for item in new_items:
                yield item

            url = self._next_url(url, page, new_count=len(new_items))
        self._check_total()
        self._finished = True

    def _drop_repeats(self, items: tuple[T, ...]) -> list[T]:
        new_items = []
        for item in items:
            key = self._key(item)
            if key in self._seen_keys:
                continue
            self._seen_keys.add(key)
            new_items.append(item)
        repeated = len(items) - len(new_items)
        if repeated:
            self._problems.append(
                f"page {self._pages_fetched} of {self._subject} repeated {repeated} item(s) "
                "of earlier pages, so the listing shifted while it was read"
            )
        return new_items

    def _next_url(self, url: URL, page: Page[T], *, new_count: int) -> URL | None:
        if not page.items:
            return None
        if new_count == 0:
            self._problems.append(
                f"page {self._pages_fetched} of {self._subject} held only items already read; "
                "paging stopped"
            )
            return None

        candidate = self._candidate_url(url, page)
        if candidate is None:
            return None
        if not self._may_follow(candidate):
            return None
        return candidate

    def _candidate_url(self, url: URL, page: Page[T]) -> URL | None:
        if page.next_url:
            return url.join(URL(page.next_url, encoded=True))
        if page.has_links:
            return None  # links.pages without `next` marks the last page.
        if len(page.items) < self._per_page:
            return None
        if self._total is not None and self.count >= self._total:
            return None
        return url.update_query(page=_page_number(url) + 1)

    def _may_follow(self, candidate: URL) -> bool:
        if candidate.origin() != self._first_url.origin():
            self._problems.append(
                f"the next link of {self._subject} points at {candidate.origin()}, not at "
                f"{self._first_url.origin()}; paging stopped there to keep the token at the API"
            )
            return False
        if str(candidate) in self._seen_urls:
            self._problems.append(
                f"the next link of {self._subject} repeated {candidate}; paging stopped there"
            )
            return False
        page_bound = self._page_bound()
        if self._pages_fetched >= page_bound:
            self._problems.append(
                f"{self._subject} still had a next page after {self._pages_fetched} pages, "
                f"the most that {self._bound_reason()} allows; paging stopped there"
            )
            return False
        return True

    def _page_bound(self) -> int:
        if self._total is None:
            return self._max_pages
        return max(1, math.ceil(self._total / self._per_page))

    def _bound_reason(self) -> str:
        if self._total is None:
            return f"the limit of {self._max_pages} pages"
        return f"a total of {self._total}"

    def _check_total(self) -> None:
        if self._total is not None and self.count < self._total:
            self._problems.append(f"{self._subject}: {self.count} of {self._total} arrived")


def _page_number(url: URL) -> int:
    try:
        return max(1, int(url.query.get("page", "1")))
    except ValueError:
        return 1
