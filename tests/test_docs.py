"""The documentation site: ``mkdocs build --strict`` passes with no warning, its generated
Reference covers every CLI command and option, every RPC, message and enum of the protos (with
their comments) and every key of the experiment-file schema, and the strictness itself cannot
silently regress (an orphan page, a broken link, a broken anchor or a committed copy of a
generated page each fail the build). README's relative links point at files that exist.

The expected contents are read from the sources here independently of the generator
(docs/hooks/reference.py), so a generator that drops something fails these tests.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from bandit_router.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PROTOS = sorted((ROOT / "proto" / "bandit_router" / "v1").glob("*.proto"))


def mkdocs_build(config_dir: Path, site_dir: Path) -> subprocess.Popen[str]:
    """``mkdocs build --strict`` of the site whose mkdocs.yml is in ``config_dir``, started."""
    # No -q: MkDocs counts for --strict only the warnings it logs, and -q stops it logging
    # them, so `mkdocs build --strict -q` passes a site with an orphan page.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # material's notice, not a build warning
    return subprocess.Popen(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
        cwd=config_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(build: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit status and output of a started build."""
    output, _ = build.communicate(timeout=180)
    return build.returncode, output


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from the repository as it is, strictly and without any warning."""
    site_dir = tmp_path_factory.mktemp("site")
    status, output = finish(mkdocs_build(ROOT, site_dir))
    assert status == 0, output
    assert "WARNING" not in output, output
    return site_dir


def page_text(site: Path, page: str) -> str:
    """A built page's main content as plain text (tags dropped, entities decoded)."""
    body = (site / page / "index.html").read_text()
    body = body[body.index('<article class="md-content__inner') :]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def headings(site: Path, page: str) -> dict[str, str]:
    """Heading text -> the plain text of its section, for every h2-h4 of a built page."""
    body = (site / page / "index.html").read_text()
    parts = re.split(r"<h[234][^>]*>(.*?)<a class=\"headerlink\"[^>]*>.*?</a></h[234]>", body)
    sections: dict[str, str] = {}
    for title, content in zip(parts[1::2], parts[2::2], strict=True):
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", content)).split())
        sections[html.unescape(re.sub(r"<[^>]+>", "", title)).strip()] = text
    return sections


# -- the command line ------------------------------------------------------------------------


def commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command and subcommand of the CLI with its parser, depth first."""
    found = [(words, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, (*words, name))
    return found


def test_every_cli_command_and_option_is_in_the_reference(site: Path) -> None:
    sections = headings(site, "reference/cli")
    every = commands(build_parser())
    assert len(every) > 25  # serve, the verbs, token create, bench, simulate, ...
    for words, parser in every[1:]:
        title = " ".join(("bandit-router", *words))
        assert title in sections, f"{title} is missing from the CLI reference"
        section = sections[title]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            for spelling in action.option_strings or [action.dest]:
                assert spelling in section, (title, spelling)
            if action.help and action.help != argparse.SUPPRESS:
                expanded = argparse.HelpFormatter(parser.prog)._expand_help(action)
                helped = " ".join(expanded.replace("`", "").split())  # backticks: Markdown code
                assert helped in section, (title, expanded)


# -- the protos ------------------------------------------------------------------------------


def rpcs_with_comments(proto: str) -> list[tuple[str, str, str]]:
    """(service, rpc, the comment just above the rpc) for every rpc of a .proto file."""
    found = []
    for service, body in re.findall(r"^service (\w+) \{(.*?)^\}", proto, re.S | re.M):
        for comment, name in re.findall(r"((?:^[ \t]*//[^\n]*\n)*)[ \t]*rpc (\w+)\(", body, re.M):
            text = " ".join(
                line.strip().removeprefix("//").strip() for line in comment.splitlines()
            )
            found.append((service, name, text.strip()))
    return found


def test_every_rpc_message_and_enum_is_in_the_proto_reference(site: Path) -> None:
    sections = headings(site, "reference/proto")
    rpcs = 0
    for path in PROTOS:
        source = path.read_text()
        for service, rpc, comment in rpcs_with_comments(source):
            rpcs += 1
            assert f"service {service}" in sections, service
            title = f"{service}.{rpc}"
            assert title in sections, f"{title} is missing from the proto reference"
            assert comment in sections[title], (title, comment)
        for kind, name in re.findall(r"^(message|enum) (\w+) \{", source, re.M):
            assert f"{kind} {name}" in sections, f"{kind} {name} ({path.name})"
    assert rpcs >= 19  # Router's 2 and Admin's 17


def test_field_comments_come_through(site: Path) -> None:
    """The comment line just above each field and enum value, quoted from the protos."""
    # Compared without spaces and backticks: a `code span` renders as a tag, which the page's
    # text turns into spaces around the word.
    text = "".join(page_text(site, "reference/proto").split())
    quoted = 0
    for path in PROTOS:
        source = path.read_text()
        for comment in re.findall(r"^\s+// ([^\n]+)\n\s+(?:[\w.<>, ]+ )?\w+ = \d+;", source, re.M):
            assert "".join(comment.replace("`", "").split()) in text, (path.name, comment)
            quoted += 1
    assert quoted >= 40


# -- the experiment-file schema --------------------------------------------------------------


def property_names(node: Any) -> set[str]:
    """The name of every property declared anywhere in a JSON Schema."""
    names: set[str] = set()
    if isinstance(node, dict):
        names.update(node.get("properties", {}))
        for value in node.values():
            names |= property_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= property_names(value)
    return names


def test_every_schema_property_is_in_the_schema_reference(site: Path) -> None:
    text = resources.files("bandit_router").joinpath("schema/experiments.schema.json").read_text()
    names = property_names(json.loads(text))
    assert {"experiments", "arms", "prior_sum_sq", "control_arm", "ttl"} <= names
    body = (site / "reference" / "experiment-file" / "index.html").read_text()
    keys = set(re.findall(r"<td><code>([^<]+)</code></td>", body))
    for name in names:
        assert any(re.search(rf"(^|\.|\])\b{re.escape(name)}$", key) for key in keys), name


# -- strictness ------------------------------------------------------------------------------


def broken_copy(root: Path, breakage: str) -> Path:
    """A copy of the site's sources under ``root`` with one defect; its config directory."""
    shutil.copy(ROOT / "mkdocs.yml", root / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", root / "docs")
    (root / "proto").symlink_to(ROOT / "proto")
    docs = root / "docs"
    if breakage == "orphan":
        (docs / "orphan.md").write_text("# Not in the nav\n")
    elif breakage == "link":
        page = docs / "concepts.md"
        page.write_text(page.read_text() + "\nSee [nowhere](nowhere.md).\n")
    elif breakage == "anchor":
        page = docs / "operating.md"
        page.write_text(page.read_text() + "\nSee [the flags](#no-such-section).\n")
    elif breakage == "generated":
        (docs / "reference").mkdir()
        (docs / "reference" / "cli.md").write_text("# Command line reference\n")
    return root


#: Each defect and the message the failed build must give for it.
DEFECTS = {
    "orphan": "orphan.md",
    "link": "nowhere.md",
    "anchor": "no-such-section",
    "generated": "docs/reference/cli.md is generated",
}


def test_each_defect_fails_the_strict_build(tmp_path: Path) -> None:
    """The validation settings of mkdocs.yml catch each defect (the builds run side by side)."""
    builds = {}
    for defect in DEFECTS:
        (tmp_path / defect).mkdir()
        source = broken_copy(tmp_path / defect, defect)
        builds[defect] = mkdocs_build(source, tmp_path / defect / "site")
    for defect, expected in DEFECTS.items():
        status, output = finish(builds[defect])
        assert status != 0, f"{defect}: the strict build passed\n{output}"
        assert expected in output, (defect, output)


def test_readme_links_resolve() -> None:
    """README's relative links (into docs/, LICENSE, CHANGELOG.md) work on GitHub."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    relative = [t for t in targets if "://" not in t]
    assert any(t.startswith("docs/") for t in relative)
    for target in relative:
        assert (ROOT / target).exists(), target
