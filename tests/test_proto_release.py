"""The contract against its releases: no breaking change since the last release (buf
breaking against the committed image of its protos), protos in buf's format, one CHANGELOG
entry per release image, and each image equal to what its tag builds (where the tag is here:
a shallow CI clone may have none, which is why the images are committed)."""

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


def test_release_images_are_what_their_tags_build(tmp_path: Path) -> None:
    tags = subprocess.run(
        ["git", "tag", "--list", "v*"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    present = [image for image in release_images() if image.stem in tags]
    if not present:
        pytest.skip("no release tag in this clone (shallow or without tags): images unchecked")
    for image in present:
        built = tmp_path / image.name
        result = subprocess.run(
            [str(ROOT / "scripts/proto-release-image"), image.stem, str(built)],
            cwd=ROOT,
            env={**os.environ, "BUF": buf_binary()},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert built.read_bytes() == image.read_bytes(), f"{image} is not what {image.stem} builds"
