"""Time ``bandit-router promote`` on a synthetic decision log of N decisions (default 10^6).

Usage: .venv/bin/python scripts/promote_timing.py [N]

Writes a log in the export format (JSON lines, whole-procedure laws) drawn from a known law
over three Bernoulli arms, starts ``bandit-router serve`` on the embedded store with the
experiment the log belongs to, and runs, as an operator would,

    bandit-router promote timing --candidate CANDIDATE --log LOG --window 0 --dry-run

printing its output and the wall-clock time. The log goes through the same reader and
evaluation as a log exported by the server (``--log`` only replaces the ExportDecisions
stream). docs/operating.md quotes the result.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ARMS = ("a", "b", "c")
MEANS = np.array([0.2, 0.5, 0.8])
LAW = np.array([1 / 6, 1 / 6, 2 / 3])  # epsilon-greedy, epsilon 0.5, c greedy


def write_log(path: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    chosen = rng.choice(len(ARMS), size=n, p=LAW)
    rewards = (rng.random(n) < MEANS[chosen]).astype(float)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    law = {arm: float(p) for arm, p in zip(ARMS, LAW, strict=True)}
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            arm = ARMS[chosen[i]]
            record = {
                "decision_id": f"d{i}",
                "experiment": "timing",
                "arm": arm,
                "propensity": law[arm],
                "reason": "EXPLOIT",
                "time": stamp,
                "unit_id": "",
                "context": {},
                "state_version": 1,
                "reward": rewards[i],
                "default_reward_applied": False,
                "probabilities": law,
                "probabilities_complete": True,
            }
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")


def experiments(epsilon: float) -> str:
    arms = ", ".join(
        f"{{name: {a}, prior_n: 100, prior_sum: {100 * m:g}}}"
        for a, m in zip(ARMS, MEANS, strict=True)
    )
    return (
        f"experiments: [{{name: timing, arms: [{arms}], "
        f"policy: {{name: epsilon_greedy, params: {{epsilon: {epsilon}}}}}}}]\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    tool = str(ROOT / ".venv" / "bin" / "bandit-router")
    with tempfile.TemporaryDirectory(prefix="promote-timing-") as tmp:
        log, live, candidate = Path(tmp, "log.jsonl"), Path(tmp, "live.yaml"), Path(tmp, "c.yaml")
        write_log(log, n)
        live.write_text(experiments(0.5))
        candidate.write_text(experiments(0.05))
        target = f"127.0.0.1:{free_port()}"
        server = subprocess.Popen(
            [tool, "serve", "--listen", target, "--experiments", str(live)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                probe = subprocess.run(
                    [tool, "get", "experiments", "--target", target], capture_output=True
                )
                if probe.returncode == 0:
                    break
                time.sleep(0.2)
            command = [tool, "promote", "timing", "--candidate", str(candidate), "--log", str(log)]
            command += ["--window", "0", "--dry-run", "--target", target, "--timeout", "60"]
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(15)
    print(result.stdout + result.stderr, end="")
    print(f"promote on {n} logged decisions: {elapsed:.1f} s (exit status {result.returncode})")
    return 0 if result.returncode in (0, 3) else 1


if __name__ == "__main__":
    sys.exit(main())
