"""The contract against its releases: no breaking change since the last release (buf
breaking against the committed image of its protos), protos in buf's format, one CHANGELOG
entry per release image, and each image equal to what its release commit builds (recorded
beside it, so a clone without tags checks it too; the images are committed so that buf
breaking needs no history at all)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .test_contract import buf_binary, run

ROOT = Path(__file__).resolve().parent.parent
RELEASES = ROOT / "proto" / "releases"


def release_images() -> list[Path]:
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.stem.removeprefix("v").split("."))

    images = sorted(RELEASES.glob("v*.binpb"), key=version)
    assert images, "no release image in proto/releases"
    return images


def test_no_breaking_change_since_the_last_release() -> None:
    last = release_images()[-1]
    result = run(buf_binary(), "breaking", "proto", "--against", str(last))
    assert result.returncode == 0, f"breaking change since {last.stem}:\n{result.stdout}"


def test_protos_are_in_buf_format() -> None:
    result = run(buf_binary(), "format", "-d", "--exit-code", "proto")
    assert result.returncode == 0, "run `buf format -w proto`:\n" + result.stdout


def test_every_release_image_has_its_changelog_entry() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    released = set(re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, re.M))
    assert {image.stem.removeprefix("v") for image in release_images()} == released


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_release_images_are_what_their_commits_build(tmp_path: Path) -> None:
    """Each image beside the commit it was built from (``vX.Y.Z.commit``, so no tag is
    needed), rebuilt from that commit byte for byte; where the tag is here, it names that
    commit. Only a shallow clone, which lacks the history, cannot check this."""
    for image in release_images():
        record = image.with_suffix(".commit")
        assert record.exists(), f"{record.name} is missing: scripts/proto-release-image writes it"
        commit = record.read_text().strip()
        if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            if git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
                pytest.skip("a shallow clone has no release commits: images unchecked")
            pytest.fail(f"{image.stem}'s commit {commit} is not in this repository")
        tagged = git("rev-parse", "--verify", "--quiet", f"{image.stem}^{{commit}}").stdout
        assert tagged.strip() in ("", commit), f"tag {image.stem} is not {commit}"
        built = tmp_path / image.name
        result = subprocess.run(
            [str(ROOT / "scripts/proto-release-image"), commit, str(built)],
            cwd=ROOT,
            env={**os.environ, "BUF": buf_binary()},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert built.read_bytes() == image.read_bytes(), f"{image} is not what {commit} builds"
