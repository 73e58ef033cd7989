"""Peak memory of the report's log scan at its limit (docs/experiment-checks.md cites it).

Feeds ANALYSIS_LIMIT decoded decisions of 20,000 units, with a segment key and a covariate,
to the scanner and prints tracemalloc's peak: the memory one GetReport holds while it scans.
Usage: .venv/bin/python scripts/report_scan_memory.py
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from typing import Any

from bandit_router.analysis.log_checks import ANALYSIS_LIMIT, CheckOptions, LogScanner
from bandit_router.model.experiments import Arm, Experiment


def records(rng: random.Random) -> Iterator[dict[str, Any]]:
    tables = [{"a": 0.2, "b": 0.5, "c": 0.3}, {"a": 0.1, "b": 0.6, "c": 0.3}]
    for i in range(ANALYSIS_LIMIT):
        yield {
            "arm": rng.choice("abc"),
            "nonce": f"{i:016x}",
            "unit_id": f"user-{rng.randrange(20_000)}",
            "probabilities": tables[i % 2],
            "probabilities_complete": True,
            "context": {"mobile": float(i % 2), "pre_metric": rng.random()},
        }


def main() -> None:
    experiment = Experiment("e", (Arm("a"), Arm("b"), Arm("c")))
    tracemalloc.start()
    scanner = LogScanner(experiment, CheckOptions(by="mobile", covariate="pre_metric"))
    for record in records(random.Random(1)):
        scanner.add_decision(record)
    scanner.finish()
    _, peak = tracemalloc.get_traced_memory()
    print(f"{ANALYSIS_LIMIT} decisions: peak {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
