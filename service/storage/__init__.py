"""Scan history in SQLite or PostgreSQL: tables, engine and sessions, migrations, queries.

Query functions take the caller's `AsyncSession` and never commit, so one
`async with sessions.begin() as session:` can store a scan, apply its diff and enqueue its
deliveries together. docs/storage.md describes the tables and the functions.
"""

from service.storage.deliveries import (
    DeliveryStatus,
    NewDelivery,
    enqueue_deliveries,
    prune_deliveries,
)
from service.storage.engine import (
    DEFAULT_DATABASE_URL,
    create_engine,
    create_sessionmaker,
    mask_database_url,
    parse_database_url,
)
from service.storage.migrate import (
    check_database,
    database_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from service.storage.retention import PruneResult, prune_scan_details
from service.storage.scans import (
    StoredDetails,
    find_resumable_scan,
    find_uncollected_scan,
    finding_from_record,
    findings_of_scan,
    get_scan,
    list_scans,
    load_collected_scan,
    previous_completed_scan,
    record_scan_started,
    recorded_scan_ids,
    resources_of_finding,
    store_scan_result,
    update_scan_status,
)
from service.storage.states import apply_diff, load_finding_states, record_alerts
from service.storage.tables import (
    AffectedResourceRecord,
    DeliveryRecord,
    FindingRecord,
    FindingStateRecord,
    LeaseRecord,
    MuteRecord,
    ScanRecord,
)
from service.storage.targets import (
    TargetStatusRecord,
    mark_cycle_started,
    record_cycle_failure,
    record_cycle_success,
    target_statuses,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "AffectedResourceRecord",
    "DeliveryRecord",
    "DeliveryStatus",
    "FindingRecord",
    "FindingStateRecord",
    "LeaseRecord",
    "MuteRecord",
    "NewDelivery",
    "PruneResult",
    "ScanRecord",
    "StoredDetails",
    "TargetStatusRecord",
    "apply_diff",
    "check_database",
    "create_engine",
    "create_sessionmaker",
    "database_revision",
    "downgrade_database",
    "enqueue_deliveries",
    "find_resumable_scan",
    "find_uncollected_scan",
    "finding_from_record",
    "findings_of_scan",
    "get_scan",
    "head_revision",
    "list_scans",
    "load_collected_scan",
    "load_finding_states",
    "mark_cycle_started",
    "mask_database_url",
    "parse_database_url",
    "previous_completed_scan",
    "prune_deliveries",
    "prune_scan_details",
    "record_alerts",
    "record_cycle_failure",
    "record_cycle_success",
    "record_scan_started",
    "recorded_scan_ids",
    "resources_of_finding",
    "store_scan_result",
    "target_statuses",
    "update_scan_status",
    "upgrade_database",
]
