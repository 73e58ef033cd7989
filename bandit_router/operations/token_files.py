"""Adding an entry to a tokens file in place, so that adding a token is one command.

Appending ``token create`` output with ``>>`` gave a file with two ``tokens:`` keys after the
second token; the loader kept the last list and locked the first holders out. Here the file is
read with the strict loader (which refuses such a file), the entry is appended to its list, the
result is validated as the server will read it, and it replaces the old file atomically (a
temporary file in the same directory, fsynced, then renamed), so a crash leaves either the
old file or the new one. A new file is created with mode 0600; an existing one keeps its mode.
Comments in an existing YAML file are not kept (the file is rewritten from its data).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bandit_router.errors import InvalidArgument
from bandit_router.operations.auth import parse_tokens_document, read_tokens_file

NEW_FILE_MODE = 0o600


def add_token_entry(path: str, entry: dict[str, Any]) -> int:
    """Append ``entry`` to the ``tokens`` list of ``path`` (created if missing); the number
    of entries the file now holds. InvalidArgument if the existing file is not valid."""
    target = Path(path)
    if target.exists():
        data = read_tokens_file(path)
        parse_tokens_document(data, path)  # refuse to build on a file the server would refuse
        mode = stat.S_IMODE(target.stat().st_mode)
    else:
        data = None
        mode = NEW_FILE_MODE
    document: dict[str, Any] = dict(data or {})
    tokens = list(document.get("tokens") or [])
    tokens.append(entry)
    document["tokens"] = tokens
    if len(parse_tokens_document(document, path)) != len(tokens):  # pragma: no cover - defensive
        raise InvalidArgument("entry not accepted", path)
    if path.endswith(".json"):
        text = json.dumps(document, indent=2) + "\n"
    else:
        text = yaml.safe_dump(document, sort_keys=False)
    _replace_atomically(target, text, mode)
    return len(tokens)


def _replace_atomically(target: Path, text: str, mode: int) -> None:
    directory = target.parent if str(target.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
