"""Counts of requests the simulator served, per route and status."""

from __future__ import annotations

from collections import Counter

# Status recorded for a request whose connection a fault dropped, so no status was sent.
DROPPED_STATUS = 0


class RequestStats:
    """Requests served per (route, status); a dropped connection counts with status 0."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, int]] = Counter()

    def record(self, route: str, status: int) -> None:
        self._counts[(route, status)] += 1

    def count(self, route: str | None = None, status: int | None = None) -> int:
        """Count requests of `route` with `status`; None matches any route or status."""
        return sum(
            number
            for (counted_route, counted_status), number in self._counts.items()
            if (route is None or counted_route == route)
            and (status is None or counted_status == status)
        )

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def by_route(self) -> dict[str, dict[int, int]]:
        """Return {route: {status: count}}, sorted by route then status."""
        table: dict[str, dict[int, int]] = {}
        for (route, status), number in sorted(self._counts.items()):
            table.setdefault(route, {})[status] = number
        return table

    def reset(self) -> None:
        self._counts.clear()
