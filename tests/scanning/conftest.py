"""Fixtures for the cycle tests: a small scenario, settings that point at a simulator, and the
database fixtures of the storage tests (each test runs on SQLite and on PostgreSQL)."""

from __future__ import annotations

from tests.storage.conftest import blank_database_url, database

__all__ = ["blank_database_url", "database"]
