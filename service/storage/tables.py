"""SQLAlchemy tables of the service, declared as ORM classes.

Every constraint and index gets its name from `NAMING_CONVENTION`, so migrations can refer to
them by name on every database (SQLite's batch mode needs names to drop or alter a constraint).
Enumerations are stored as their string values, checked by named CHECK constraints.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.digitalocean.models import ScanStatus, Severity
from service.storage.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY, so the 64-bit ids
# of the large tables are plain INTEGER there (SQLite integers are 64-bit anyway).
BigId = BigInteger().with_variant(Integer(), "sqlite")

STATE_STATUSES = ("open", "resolved", "superseded")
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed")


def _one_of(column: str, values: Iterable[str]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


_SEVERITY_VALUES = [severity.value for severity in Severity]
_SCAN_STATUS_VALUES = [status.value for status in ScanStatus]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every Mapped[datetime] column is a UTCDateTime. SQLAlchemy reads this mapping once, when
    # the classes are declared, and nothing changes it.
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012


class ScanRecord(Base):
    """One scan of one target, recorded from the moment it is created at DigitalOcean.

    `scan_id` is DigitalOcean's id of the scan; `id` is the row id that other tables refer to.
    The diff counts stay zero unless a diff changed the finding states (`states_updated`).
    """

    __tablename__ = "scans"
    __table_args__ = (
        UniqueConstraint("target", "scan_id"),
        Index(None, "target", "requested_at"),
        # "The previous completed scan of a target": equality on the first two columns, then
        # the newest finished_at.
        Index(None, "target", "status", "finished_at"),
        CheckConstraint(_one_of("status", _SCAN_STATUS_VALUES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str] = mapped_column(String)
    scan_id: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    status_text: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime]
    created_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    requests_made: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    collected_at: Mapped[datetime | None]
    collection_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    collection_problems: Mapped[list[str]] = mapped_column(JSON, default=list)
    findings_count: Mapped[int] = mapped_column(Integer, default=0)
    resources_count: Mapped[int] = mapped_column(Integer, default=0)
    states_updated: Mapped[bool] = mapped_column(Boolean, default=False)
    new_count: Mapped[int] = mapped_column(Integer, default=0)
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    escalated_count: Mapped[int] = mapped_column(Integer, default=0)
    resolved_count: Mapped[int] = mapped_column(Integer, default=0)
    unchanged_count: Mapped[int] = mapped_column(Integer, default=0)
    alerted_count: Mapped[int] = mapped_column(Integer, default=0)
    details_pruned_at: Mapped[datetime | None]

    @property
    def scan_status(self) -> ScanStatus:
        return ScanStatus.parse(self.status)


class FindingRecord(Base):
    """One finding of one scan, with every field DigitalOcean returns.

    `resources_fetched` is False when the scan collected no affected resources for the
    finding, which gives it a rule-level fingerprint.
    """

    __tablename__ = "findings"
    __table_args__ = (
        Index(None, "scan_row_id"),
        CheckConstraint(_one_of("severity", _SEVERITY_VALUES), name="severity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scan_row_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    rule_uuid: Mapped[str] = mapped_column(String)
    finding_uuid: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String)
    details: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime | None]
    business_impact: Mapped[str] = mapped_column(Text)
    technical_details: Mapped[str] = mapped_column(Text)
    mitigation_steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    affected_resources_count: Mapped[int | None] = mapped_column(Integer)
    resources_fetched: Mapped[bool] = mapped_column(Boolean)


class AffectedResourceRecord(Base):
    """One affected resource of one stored finding."""

    __tablename__ = "affected_resources"
    __table_args__ = (Index(None, "finding_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    finding_id: Mapped[int] = mapped_column(BigId, ForeignKey("findings.id", ondelete="CASCADE"))
    urn: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String)


class FindingStateRecord(Base):
    """The history of one fingerprint of one target: status, severity, sightings.

    `resource_urn` is "" for a rule-level fingerprint. `status` is open, resolved, or
    superseded: a rule-level state that resource-level states of the same rule replaced.
    The rule and resource names are the last ones seen, so a resolved finding can be named
    without its pruned scan details.
    """

    __tablename__ = "finding_states"
    __table_args__ = (
        # Also serves "every state of a target", which the diff loads.
        UniqueConstraint("target", "rule_uuid", "resource_urn"),
        Index(None, "target", "status"),
        CheckConstraint(_one_of("status", STATE_STATUSES), name="status"),
        CheckConstraint(_one_of("severity", _SEVERITY_VALUES), name="severity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    target: Mapped[str] = mapped_column(String)
    rule_uuid: Mapped[str] = mapped_column(String)
    resource_urn: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    severity: Mapped[str] = mapped_column(String)
    previous_severity: Mapped[str | None] = mapped_column(String)
    rule_name: Mapped[str] = mapped_column(Text)
    resource_name: Mapped[str] = mapped_column(Text)
    resource_type: Mapped[str] = mapped_column(String)
    first_seen_at: Mapped[datetime]
    first_seen_scan_row_id: Mapped[int | None] = mapped_column(
        ForeignKey("scans.id", ondelete="SET NULL")
    )
    last_seen_at: Mapped[datetime]
    last_seen_scan_row_id: Mapped[int | None] = mapped_column(
        ForeignKey("scans.id", ondelete="SET NULL")
    )
    resolved_at: Mapped[datetime | None]
    times_reopened: Mapped[int] = mapped_column(Integer, default=0)
    last_alerted_at: Mapped[datetime | None]


class DeliveryRecord(Base):
    """One message for one notifier in the outbox, kept until it is sent or gives up.

    (`notifier`, `dedupe_key`) is unique, so a repeated cycle cannot enqueue the same alert
    for the same notifier twice. `payload` is the rendered message body as JSON text and
    `webhook_id` the Standard Webhooks id, both stable across retries.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notifier", "dedupe_key"),
        Index(None, "status", "next_attempt_at"),
        CheckConstraint(_one_of("status", DELIVERY_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str] = mapped_column(String)
    scan_row_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id", ondelete="SET NULL"))
    notifier: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    dedupe_key: Mapped[str] = mapped_column(String)
    payload: Mapped[str] = mapped_column(Text)
    webhook_id: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class MuteRecord(Base):
    """A local mute: every column left NULL matches any value."""

    __tablename__ = "mutes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str | None] = mapped_column(String)
    rule_uuid: Mapped[str | None] = mapped_column(String)
    resource_urn: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class LeaseRecord(Base):
    """The right of one process (`holder`) to run one target's cycle until `expires_at`."""

    __tablename__ = "leases"

    target: Mapped[str] = mapped_column(String, primary_key=True)
    holder: Mapped[str] = mapped_column(String)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


# The Core tables, for bulk statements that skip the ORM's per-object work.
scans_table = Base.metadata.tables["scans"]
findings_table = Base.metadata.tables["findings"]
affected_resources_table = Base.metadata.tables["affected_resources"]
finding_states_table = Base.metadata.tables["finding_states"]
deliveries_table = Base.metadata.tables["deliveries"]
