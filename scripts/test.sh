#!/usr/bin/env bash
# The test command (`make test`): the whole suite, on PostgreSQL when DATABASE_URL is set. The engine's tests
# (tests/engine) run first without Django (`-p no:django`), proving the engine stands alone; the rest after.
# With arguments (e.g. `-m smoke`, a path) pytest runs once with them.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE=sceneclf_site.settings.test
if [ -z "${REDIS_URL:-}" ]; then
  export REDIS_URL="redis://127.0.0.1:6379/15"
fi
echo "tests: database ${DATABASE_URL:-sqlite (embedded)}; broker $REDIS_URL"
if [ $# -eq 0 ]; then
  echo "engine tests without Django"
  .venv/bin/python -m pytest tests/engine -p no:django
  exec .venv/bin/python -m pytest --ignore=tests/engine
fi
exec .venv/bin/python -m pytest "$@"
