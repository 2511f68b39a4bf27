#!/usr/bin/env bash
# Idempotent setup for `make run`: database, demo project, default backbone weights.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
PY=.venv/bin/python
mkdir -p var
$PY manage.py migrate --noinput
$PY manage.py createcachetable  # throttle counters when no Redis is configured (no-op otherwise)
$PY manage.py collectstatic --noinput >/dev/null
$PY manage.py backbones install "${DEFAULT_BACKBONE:-multilingual-e5-small}"
$PY manage.py bootstrap_demo
# Give the demo a published model from the start, so predict and review work right away (~20 s).
$PY manage.py train --project demo --publish --if-no-model
