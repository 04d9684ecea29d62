"""The token stays secret and travels only over https or to a loopback address."""

from __future__ import annotations

import logging

import pytest
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import SecretStr

from service.digitalocean import (
    ApiConnectionError,
    AuthenticationError,
    DigitalOceanError,
    InvalidResponseError,
    SecurityClient,
)
from service.errors import ConfigError
from service.simulator import FaultKind, Simulator
from tests.digitalocean.simulated import client_for
from tests.support.simulators import SimulatorFactory

TOKEN = "dop_v1_" + "5ec2e7" * 10 + "abcd"


def error_texts(error: BaseException) -> list[str]:
    """Return str and repr of the error and of every error it chains to."""
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


@pytest.mark.parametrize(
    "api_url",
    ["http://api.digitalocean.com", "http://10.0.0.5:8080", "http://128.0.0.1", "http://[::2]"],
)
def test_plain_http_to_other_host_is_rejected(api_url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        SecurityClient(TOKEN, api_url=api_url)

    message = str(raised.value)
    assert api_url in message
    assert "https" in message
    assert TOKEN not in message


@pytest.mark.parametrize(
    "api_url",
    ["http://127.0.0.1:8080", "http://127.9.9.9", "http://[::1]:8080", "http://localhost:1"],
)
def test_plain_http_to_loopback_is_accepted(api_url: str) -> None:
    client = SecurityClient(TOKEN, api_url=api_url)

    assert client.api_url == api_url


@pytest.mark.parametrize(
    "api_url",
    ["api.digitalocean.com", "ftp://api.digitalocean.com", "https://user:pw@api.example"],
)
def test_unusable_api_url_is_rejected(api_url: str) -> None:
    with pytest.raises(ConfigError, match="invalid api_url") as raised:
        SecurityClient(TOKEN, api_url=api_url)

    assert "pw" not in str(raised.value)


@pytest.mark.parametrize("token", ["", "   ", TOKEN + "\n", SecretStr("")])
def test_empty_or_padded_token_is_rejected(token: str | SecretStr) -> None:
    with pytest.raises(ConfigError, match="token"):
        SecurityClient(token, api_url="http://127.0.0.1:1")


async def test_rejected_url_sends_nothing(simulator: Simulator) -> None:
    # The same simulator reached through a non-loopback name must never see a request.
    other_host_url = simulator.url.replace("127.0.0.1", "cspm-watch.invalid")
    with pytest.raises(ConfigError):
        SecurityClient(simulator.token, api_url=other_host_url)

    assert simulator.stats.total == 0


async def test_client_used_before_opening_raises() -> None:
    client = SecurityClient(TOKEN, api_url="http://127.0.0.1:1")

    with pytest.raises(RuntimeError, match="async with SecurityClient"):
        await client.list_scans()


def test_client_repr_has_no_token() -> None:
    client = SecurityClient(SecretStr(TOKEN), api_url="http://127.0.0.1:1")

    assert TOKEN not in repr(client)
    assert TOKEN not in str(vars(client))


async def test_token_absent_from_logs_and_errors(
    make_simulator: SimulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    simulator = await make_simulator(token=TOKEN)
    simulator.faults.add("list_scans", FaultKind.SERVER_ERROR)
    simulator.faults.add("get_settings", FaultKind.MALFORMED_BODY)
    simulator.faults.add("update_plan", FaultKind.DROP_BEFORE, times=None)
    errors: list[DigitalOceanError] = []
    caplog.set_level(logging.DEBUG)

    with structlog.testing.capture_logs() as events:
        async with client_for(simulator, max_retries=1) as client:
            await client.list_scans()
            await client.create_scan()
            for call in (client.get_settings, lambda: client.update_plan({})):
                try:
                    await call()
                except (InvalidResponseError, ApiConnectionError) as error:
                    errors.append(error)
        async with SecurityClient(TOKEN + "x", api_url=simulator.url) as wrong:
            try:
                await wrong.list_scans()
            except AuthenticationError as error:
                errors.append(error)

    assert len(errors) == 3
    assert any(event["event"] == "request_retried" for event in events)
    for event in events:
        assert TOKEN not in repr(event)
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
    for caught in errors:
        for text in error_texts(caught):
            assert TOKEN not in text


@web.middleware
async def links_to_other_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Point every next link at another loopback origin, as a hostile server could."""
    response = await handler(request)
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    text = response.body.decode().replace("//127.0.0.1:", "//127.0.0.2:")
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return web.Response(text=text, status=response.status, headers=headers)


async def test_next_link_to_another_origin_is_not_followed(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(middlewares=[links_to_other_origin])
    for _ in range(201):
        simulator.state.create_scan()
    async with client_for(simulator) as client:
        listing = await client.list_scans()

    assert len(listing.items) == 200
    assert not listing.complete
    assert "127.0.0.2" in listing.problems[0]
    assert simulator.stats.total == 1
