"""Logging: JSON lines carry the structured fields, and no secret ever reaches the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bandit_router.telemetry.logs import REDACTED, configure_logging, redact_text

SECRETS = ("s3cr3tPass", "eyJhbGciOiJIUzI1NiJ9.payload.sig", "hunter2", "tok_live_123", "abcDEF987")


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream, logging.getLogger("bandit_router.test")
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)


def _log_secrets(logger: logging.Logger) -> None:
    logger.info("connecting to %s", "redis://app:s3cr3tPass@redis.internal:6379/0")
    logger.info("tls store rediss://:hunter2@cache:6380 ready")
    logger.warning("rejected call with authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig")
    logger.info(
        "metadata", extra={"metadata": [("authorization", "Bearer abcDEF987"), ("x-id", "7")]}
    )
    logger.info(
        "login", extra={"token": "tok_live_123", "password": "hunter2", "experiment": "exp1"}
    )
    logger.info(
        "config", extra={"store": {"url": "redis://u:s3cr3tPass@h/0", "client_secret": "hunter2"}}
    )
    logger.info("retry password=hunter2 api_key=abcDEF987")
    try:
        raise ConnectionError("cannot reach redis://app:s3cr3tPass@redis.internal:6379")
    except ConnectionError:
        logger.exception("store down")


@pytest.mark.parametrize("json_lines", [True, False])
def test_no_secret_is_written(
    captured: tuple[io.StringIO, logging.Logger], json_lines: bool
) -> None:
    stream, logger = captured
    configure_logging("INFO", json_lines, stream=stream)
    _log_secrets(logger)
    output = stream.getvalue()
    for secret in SECRETS:
        assert secret not in output, f"{secret!r} leaked:\n{output}"
    assert output.count(REDACTED) >= 10
    # What is not secret survives: user, host, experiment.
    assert "redis://app:[REDACTED]@redis.internal:6379/0" in output
    assert "exp1" in output


def test_json_lines_structure(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, logger = captured
    configure_logging("debug", True, stream=stream)
    logger.debug("decided", extra={"experiment": "exp1", "decision_id": "d-42", "propensity": 0.25})
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logger.error("failed", extra={"experiment": "exp1"}, exc_info=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the traceback stays inside its JSON object
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "DEBUG"
    assert first["logger"] == "bandit_router.test"
    assert first["message"] == "decided"
    assert (first["experiment"], first["decision_id"], first["propensity"]) == (
        "exp1",
        "d-42",
        0.25,
    )
    assert first["time"].endswith("+00:00")
    assert "ZeroDivisionError" in second["exception"]


def test_configure_is_idempotent_and_levels_apply(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, logger = captured
    configure_logging("INFO", False, stream=stream)
    configure_logging("WARNING", False, stream=stream)
    logger.info("hidden")
    logger.warning("shown", extra={"experiment": "exp1"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1  # one handler, not two
    assert "shown experiment=exp1" in lines[0]
    with pytest.raises(ValueError, match="unknown level"):
        configure_logging("LOUD", False, stream=stream)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:[REDACTED]@host:6379/0"),
        ("rediss://:pw@host", "rediss://:[REDACTED]@host"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("Authorization: Basic dXNlcjpwdw==", "Authorization: [REDACTED]"),
        ('{"authorization": "Bearer abc.def"}', '{"authorization": "[REDACTED]"}'),
        ("got bearer abc.def-ghi", "got bearer [REDACTED]"),
        ("secret=xyz&other=1", "secret=[REDACTED]&other=1"),
        ("experiment=exp1 arm=B", "experiment=exp1 arm=B"),
    ],
)
def test_redact_text(raw: str, expected: str) -> None:
    assert redact_text(raw) == expected
