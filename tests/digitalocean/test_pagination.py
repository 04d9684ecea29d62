"""Unit tests of PageStream's stopping rules, with hand-written page fetchers (no HTTP).

The tests against the simulator cover the same rules over real HTTP; these cover the cases a
well-behaved server never produces.
"""

from __future__ import annotations

from yarl import URL

from service.digitalocean.pagination import Page, PageStream, StopPaging

FIRST_URL = URL("http://127.0.0.1:9/v2/items?per_page=2&page=1")


class ScriptedPages:
    """Returns the scripted pages in order and records each URL fetched."""

    def __init__(self, *pages: Page[str]) -> None:
        self._pages = list(pages)
        self.urls: list[URL] = []

    async def __call__(self, url: URL) -> Page[str]:
        self.urls.append(url)
        if not self._pages:
            return Page(())
        return self._pages.pop(0)


def make_stream(pages: ScriptedPages, **options: int) -> PageStream[str]:
    return PageStream(pages, FIRST_URL, key=str, subject="items", per_page=2, **options)


async def test_page_stream_without_links_pages_until_short_page() -> None:
    pages = ScriptedPages(Page(("a", "b")), Page(("c",)))

    collected = await make_stream(pages).collect()

    assert collected.items == ("a", "b", "c")
    assert collected.complete
    assert [url.query["page"] for url in pages.urls] == ["1", "2"]


async def test_page_stream_full_last_page() -> None:
    pages = ScriptedPages(Page(("a", "b")), Page(()))

    collected = await make_stream(pages).collect()

    assert collected.items == ("a", "b")
    assert collected.complete
    assert len(pages.urls) == 2


async def test_page_stream_expected_total_saves_the_empty_page() -> None:
    pages = ScriptedPages(Page(("a", "b")), Page(("c", "d")))

    collected = await make_stream(pages, expected_total=4).collect()

    assert collected.complete
    assert len(pages.urls) == 2


async def test_page_stream_short_of_expected_total_is_incomplete() -> None:
    pages = ScriptedPages(Page(("a", "b")), Page(("c",)))

    collected = await make_stream(pages, expected_total=5).collect()

    assert not collected.complete
    assert collected.problems == ("items: 3 of 5 arrived",)


async def test_page_stream_foreign_next_link() -> None:
    pages = ScriptedPages(Page(("a", "b"), next_url="https://elsewhere.example/v2/items?page=2"))

    collected = await make_stream(pages).collect()

    assert collected.items == ("a", "b")
    assert not collected.complete
    assert len(pages.urls) == 1
    assert "elsewhere.example" in collected.problems[0]


async def test_page_stream_relative_next_link() -> None:
    pages = ScriptedPages(Page(("a", "b"), next_url="/v2/items?per_page=2&page=2"), Page(("c",)))

    collected = await make_stream(pages).collect()

    assert collected.complete
    assert pages.urls[1] == URL("http://127.0.0.1:9/v2/items?per_page=2&page=2")


async def test_page_stream_page_of_repeated_items_stops_paging() -> None:
    # A server that ignores `page` returns the first page forever.
    pages = ScriptedPages(*[Page(("a", "b"))] * 5)

    collected = await make_stream(pages).collect()

    assert collected.items == ("a", "b")
    assert not collected.complete
    assert len(pages.urls) == 2


async def test_page_stream_partly_repeated_page_is_incomplete() -> None:
    pages = ScriptedPages(Page(("a", "b")), Page(("b", "c")), Page(()))

    collected = await make_stream(pages).collect()

    assert collected.items == ("a", "b", "c")
    assert not collected.complete
    assert "repeated 1 item(s)" in collected.problems[0]


async def test_page_stream_without_total_stops_at_max_pages() -> None:
    pages = ScriptedPages(*[Page((f"{n}a", f"{n}b")) for n in range(10)])

    collected = await make_stream(pages, max_pages=3).collect()

    assert len(collected.items) == 6
    assert not collected.complete
    assert "limit of 3 pages" in collected.problems[0]


async def test_page_stream_fetcher_stops_paging() -> None:
    class StopsOnSecondPage(ScriptedPages):
        async def __call__(self, url: URL) -> Page[str]:
            if self.urls:
                raise StopPaging("the scan changed")
            return await super().__call__(url)

    collected = await make_stream(StopsOnSecondPage(Page(("a", "b")))).collect()

    assert collected.items == ("a", "b")
    assert collected.problems == ("the scan changed",)


async def test_page_stream_links_without_next_end_paging() -> None:
    pages = ScriptedPages(Page(("a", "b"), has_links=True, total=2))

    collected = await make_stream(pages).collect()

    assert collected.complete
    assert len(pages.urls) == 1


async def test_page_stream_complete_is_false_before_iteration() -> None:
    stream = make_stream(ScriptedPages(Page(("a",))))

    assert not stream.complete
