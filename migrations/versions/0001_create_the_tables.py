"""Create the tables: scans, findings, affected resources, finding states, deliveries, mutes,
leases and target status.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_leases")),
    )
    op.create_table(
        "target_status",
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_reason", sa.Text(), nullable=True),
        sa.Column("cycle_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_target_status")),
    )
    op.create_table(
        "mutes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("rule_uuid", sa.String(), nullable=True),
        sa.Column("resource_urn", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mutes")),
    )
    op.create_table(
        "scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("scan_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("status_text", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("poll_count", sa.Integer(), nullable=False),
        sa.Column("requests_made", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("collection_complete", sa.Boolean(), nullable=False),
        sa.Column("collection_problems", sa.JSON(), nullable=False),
        sa.Column("findings_count", sa.Integer(), nullable=False),
        sa.Column("resources_count", sa.Integer(), nullable=False),
        sa.Column("states_updated", sa.Boolean(), nullable=False),
        sa.Column("new_count", sa.Integer(), nullable=False),
        sa.Column("reopened_count", sa.Integer(), nullable=False),
        sa.Column("escalated_count", sa.Integer(), nullable=False),
        sa.Column("resolved_count", sa.Integer(), nullable=False),
        sa.Column("unchanged_count", sa.Integer(), nullable=False),
        sa.Column("alerted_count", sa.Integer(), nullable=False),
        sa.Column("details_pruned_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('IN_PROGRESS', 'COMPLETED', 'FAILED', 'CSPM_NOT_ENABLED', "
            "'SCAN_NOT_RUN', 'UNKNOWN')",
            name=op.f("ck_scans_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
        sa.UniqueConstraint("target", "scan_id", name=op.f("uq_scans_target_scan_id")),
    )
    op.create_index(
        op.f("ix_scans_target_requested_at"), "scans", ["target", "requested_at"], unique=False
    )
    op.create_index(
        op.f("ix_scans_target_status_finished_at"),
        "scans",
        ["target", "status", "finished_at"],
        unique=False,
    )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("scan_row_id", sa.Integer(), nullable=True),
        sa.Column("notifier", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("dedupe_key", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("webhook_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed')", name=op.f("ck_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["scan_row_id"],
            ["scans.id"],
            name=op.f("fk_deliveries_scan_row_id_scans"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "notifier", "dedupe_key", name=op.f("uq_deliveries_notifier_dedupe_key")
        ),
    )
    op.create_index(
        op.f("ix_deliveries_status_next_attempt_at"),
        "deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )

    op.create_table(
        "finding_states",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("rule_uuid", sa.String(), nullable=False),
        sa.Column("resource_urn", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("previous_severity", sa.String(), nullable=True),
        sa.Column("rule_name", sa.Text(), nullable=False),
        sa.Column("resource_name", sa.Text(), nullable=False),
        sa.Column("resource_type", sa.String(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_scan_row_id", sa.Integer(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_scan_row_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("times_reopened", sa.Integer(), nullable=False),
        sa.Column("last_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')",
            name=op.f("ck_finding_states_severity"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'resolved', 'superseded')", name=op.f("ck_finding_states_status")
        ),
        sa.ForeignKeyConstraint(
            ["first_seen_scan_row_id"],
            ["scans.id"],
            name=op.f("fk_finding_states_first_seen_scan_row_id_scans"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["last_seen_scan_row_id"],
            ["scans.id"],
            name=op.f("fk_finding_states_last_seen_scan_row_id_scans"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_states")),
        sa.UniqueConstraint(
            "target",
            "rule_uuid",
            "resource_urn",
            name=op.f("uq_finding_states_target_rule_uuid_resource_urn"),
        ),
    )
    op.create_index(
        op.f("ix_finding_states_target_status"),
        "finding_states",
        ["target", "status"],
        unique=False,
    )

    op.create_table(
        "findings",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("scan_row_id", sa.Integer(), nullable=False),
        sa.Column("rule_uuid", sa.String(), nullable=False),
        sa.Column("finding_uuid", sa.String(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("business_impact", sa.Text(), nullable=False),
        sa.Column("technical_details", sa.Text(), nullable=False),
        sa.Column("mitigation_steps", sa.JSON(), nullable=False),
        sa.Column("affected_resources_count", sa.Integer(), nullable=True),
        sa.Column("resources_fetched", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')", name=op.f("ck_findings_severity")
        ),
        sa.ForeignKeyConstraint(
            ["scan_row_id"],
            ["scans.id"],
            name=op.f("fk_findings_scan_row_id_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    op.create_index(op.f("ix_findings_scan_row_id"), "findings", ["scan_row_id"], unique=False)

    op.create_table(
        "affected_resources",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("finding_id", BIG_ID, nullable=False),
        sa.Column("urn", sa.String(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["findings.id"],
            name=op.f("fk_affected_resources_finding_id_findings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_affected_resources")),
    )
    op.create_index(
        op.f("ix_affected_resources_finding_id"), "affected_resources", ["finding_id"], unique=False
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; the order respects the foreign keys.
    for table in (
        "affected_resources",
        "findings",
        "finding_states",
        "deliveries",
        "scans",
        "mutes",
        "leases",
        "target_status",
    ):
        op.drop_table(table)
