"""A small HTTP helper for the simulator tests: one request, its status, headers and JSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from service.simulator import Simulator

SCANS = "/v2/security/scans"
SETTINGS = "/v2/security/settings"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class ApiCaller:
    """Send requests to one simulator with a token, the simulator's own by default."""

    def __init__(self, session: aiohttp.ClientSession, simulator: Simulator) -> None:
        self.session = session
        self.simulator = simulator

    async def __call__(
        self, method: str, path: str, *, token: str | None = None, **options: Any
    ) -> Reply:
        headers = dict(options.pop("headers", {}))
        headers.setdefault("Authorization", f"Bearer {token or self.simulator.token}")
        url = path if path.startswith("http") else self.simulator.url + path
        async with self.session.request(method, url, headers=headers, **options) as response:
            return Reply(response.status, response.headers, await response.text())

    async def get(self, path: str, **options: Any) -> Reply:
        return await self(method="GET", path=path, **options)

    async def post(self, path: str, **options: Any) -> Reply:
        return await self(method="POST", path=path, **options)

    async def create_scan(self) -> dict[str, Any]:
        reply = await self.post(SCANS)
        assert reply.status == 201, reply.text
        scan: dict[str, Any] = reply.json["scan"]
        return scan

    async def finish_scan(self, scan_id: str, *, polls: int = 10) -> dict[str, Any]:
        """Poll until the scan leaves IN_PROGRESS; fail after `polls` polls."""
        for _ in range(polls):
            reply = await self.get(f"{SCANS}/{scan_id}", params={"per_page": "200"})
            assert reply.status == 200, reply.text
            scan: dict[str, Any] = reply.json["scan"]
            if scan["status"] != "IN_PROGRESS":
                return scan
        raise AssertionError(f"scan {scan_id} still IN_PROGRESS after {polls} polls")


@asynccontextmanager
async def api_caller(simulator: Simulator) -> AsyncIterator[ApiCaller]:
    # A fresh connection per request, so that aiohttp never retries a request on a reused
    # connection that a fault dropped.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield ApiCaller(session, simulator)
