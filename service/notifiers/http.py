"""One aiohttp session per notifier, opened on first use in the running event loop."""

from __future__ import annotations

import asyncio

import aiohttp

from service import __version__

USER_AGENT = f"cspm-watch/{__version__}"


class LoopBoundSession:
    """An aiohttp session that is reopened when used from another event loop.

    A session belongs to the loop it was created in, and a notifier can outlive a loop (the
    CLI and tests run several `asyncio.run` calls with the same notifiers).
    """

    def __init__(self, *, timeout_s: float):
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> tuple[aiohttp.ClientSession, bool]:
        """Return the session of the running loop, and whether this call opened it."""
        loop = asyncio.get_running_loop()
        if self._session is not None and not self._session.closed and self._loop is loop:
            return self._session, False
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, headers={"User-Agent": USER_AGENT}
        )
        self._loop = loop
        return self._session, True

    async def aclose(self) -> None:
        session, loop = self._session, self._loop
        self._session, self._loop = None, None
        if session is not None and loop is asyncio.get_running_loop():
            await session.close()
