#!/usr/bin/env bash
# The test command (`make test`): the whole suite, on PostgreSQL when DATABASE_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE=sceneclf_site.settings.test
if [ -z "${REDIS_URL:-}" ]; then
  export REDIS_URL="redis://127.0.0.1:6379/15"
fi
echo "tests: database ${DATABASE_URL:-sqlite (embedded)}; broker $REDIS_URL"
exec .venv/bin/python -m pytest "$@"
