#!/usr/bin/env bash
# Start web, one worker per queue and beat under honcho; Ctrl-C stops every child.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cat <<MSG

  sceneclf is starting at  http://127.0.0.1:${PORT:-8000}/
  demo logins (password: sceneclf-demo)
    owner      demo_owner
    annotator  demo_annotator   (also demo_annotator2)
    reviewer   demo_reviewer
  API docs:  http://127.0.0.1:${PORT:-8000}/api/v1/docs    health: /api/v1/health

MSG
# honcho hands each process PORT (5000 unless told): give the web process the port announced above.
exec .venv/bin/honcho start -f Procfile --port "${PORT:-8000}"
