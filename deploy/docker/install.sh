#!/bin/sh
# Installs bandit-router into a new virtual environment PREFIX with exactly the versions in
# uv.lock, the project itself not editable, and its bytecode compiled (a read-only container
# then writes no __pycache__ and starts faster). The Dockerfile's build stage runs this from
# the build context; tests/test_deploy_image.py runs the Dockerfile's RUN lines, and so this
# script, from a clean copy of that context, then starts the installed console script.
# Usage: sh deploy/docker/install.sh PREFIX
# Needs only python3 with venv: uv itself, at the release scripts/setup-venv pins, is
# installed into a throwaway environment first.
set -eu
if [ "$#" -ne 1 ]; then
  echo "usage: $0 PREFIX" >&2
  exit 2
fi
PREFIX=$1
UV_VERSION=0.13.9
PYTHON="${PYTHON:-python3}"
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PYTHON" -m venv "$tools/uv"
"$tools/uv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir "uv==$UV_VERSION"
# --frozen: uv.lock as it is, never re-resolved; the server extra (the base distribution is
# only the Python client) and no other: no simulations, no test tools.
# --link-mode copy: the files must live in PREFIX itself, which the image copies on.
UV_PROJECT_ENVIRONMENT="$PREFIX" UV_PYTHON_DOWNLOADS=never \
  "$tools/uv/bin/uv" sync --quiet --frozen --no-dev --no-editable --compile-bytecode --extra server \
  --link-mode copy --python "$PYTHON"
cp deploy/docker/healthcheck.py "$PREFIX/healthcheck.py"
