"""cspm-watch: scheduled DigitalOcean Security (CSPM) scans with history, diffs and alerts."""

__version__ = "0.1.0"
