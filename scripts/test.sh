#!/usr/bin/env bash
# The whole test suite: lint, unit tests, daemon tests and system tests (root: real containers).
# Built test images are cached in /var/cache/machined-test so repeated runs do not rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check machined cli tests bench
exec .venv/bin/python -m pytest -ra "$@"
