"""Put benchmarks/ on the import path.

The benchmark scripts import each other by module name, because `python benchmarks/run.py`
puts their folder first on the path."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIRECTORY = Path(__file__).resolve().parents[2] / "benchmarks"

if str(BENCH_DIRECTORY) not in sys.path:
    sys.path.append(str(BENCH_DIRECTORY))
