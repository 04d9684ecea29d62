"""Route names of the simulated API and the token scope each one requires.

The names appear in `Simulator.stats`, in fault scripts and in logs.
"""

from __future__ import annotations

from collections.abc import Mapping

LIST_SCANS = "list_scans"
CREATE_SCAN = "create_scan"
LATEST_SCAN = "latest_scan"
CREATE_RULE = "create_rule"
GET_SCAN = "get_scan"
AFFECTED_RESOURCES = "affected_resources"
GET_SETTINGS = "get_settings"
UPDATE_PLAN = "update_plan"
CREATE_SUPPRESSION = "create_suppression"
DELETE_SUPPRESSION = "delete_suppression"

# Requests that match no route are counted under this name.
UNKNOWN_ROUTE = "unknown"

# Scopes as DigitalOcean's reference lists them for each operation.
REQUIRED_SCOPES: Mapping[str, str] = {
    LIST_SCANS: "security:read",
    CREATE_SCAN: "security:create",
    LATEST_SCAN: "security:read",
    CREATE_RULE: "security:create",
    GET_SCAN: "security:read",
    AFFECTED_RESOURCES: "security:read",
    GET_SETTINGS: "security:read",
    UPDATE_PLAN: "security:update",
    CREATE_SUPPRESSION: "security:create",
    DELETE_SUPPRESSION: "security:delete",
}

ROUTE_NAMES: tuple[str, ...] = tuple(REQUIRED_SCOPES)
ALL_SCOPES: frozenset[str] = frozenset(REQUIRED_SCOPES.values())
