#!/usr/bin/env python3
"""Write alerts.yml with every ``runbook_url`` pointing at another base URL.

Alertmanager receivers (Slack, PagerDuty, e-mail) show ``runbook_url`` verbatim, so it must be
an absolute link, and where the runbooks live differs per installation. Every rule in
alerts.yml links to one base plus an anchor (``<base>#runbook-drift``); this script swaps the
base and leaves everything else byte for byte, so the promtool tests in alerts_test.yml still
describe the rendered file. Standard library only: it runs wherever Prometheus is configured.

    python3 deploy/prometheus/render_alerts.py --runbook-base https://wiki.example.org/br \\
        > /etc/prometheus/rules/bandit-router.yml
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

ALERTS = Path(__file__).resolve().with_name("alerts.yml")
RUNBOOK_LINE = re.compile(r'^(\s*runbook_url:\s*")([^"#]*)(#[^"]*")[ \t]*$', re.MULTILINE)


def runbook_bases(text: str) -> set[str]:
    """The distinct bases (URL before ``#``) of the file's runbook links."""
    return {m.group(2) for m in RUNBOOK_LINE.finditer(text)}


def check_base(base: str) -> str:
    """An absolute http(s) URL without a fragment; a relative link would not resolve in a
    notification, and a fragment would collide with the per-alert anchor."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment or "#" in base:
        raise ValueError(f"--runbook-base must be an absolute http(s) URL without '#': {base!r}")
    if '"' in base or any(c.isspace() for c in base):
        raise ValueError(f"--runbook-base must not contain quotes or spaces: {base!r}")
    return base


def render(text: str, base: str) -> str:
    """``text`` with every runbook link's base replaced by ``base``."""
    check_base(base)
    if not runbook_bases(text):
        raise ValueError("no runbook_url lines found")
    return RUNBOOK_LINE.sub(lambda m: m.group(1) + base + m.group(3), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runbook-base", required=True, help="absolute URL, e.g. https://...")
    parser.add_argument("--input", type=Path, default=ALERTS, help="rules file (alerts.yml)")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.input.read_text(), args.runbook_base))
    except ValueError as exc:
        print(f"render_alerts: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
