#!/usr/bin/env bash
# Start web (gunicorn), one worker per queue and beat under honcho. The banner prints once the web server
# answers; Ctrl-C (or SIGTERM) stops every child.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
export PORT="${PORT:-8000}"
URL="http://127.0.0.1:${PORT}"

# Django logs in its TIME_ZONE; honcho stamps each line in TZ: give both the same zone, so one log has one clock.
TZ="$(.venv/bin/python -c 'from sceneclf_site.settings import base; print(base.TIME_ZONE)')"
export TZ

# Prometheus metrics of every web and worker process, added up by GET /metrics; emptied at each start so
# counters of an earlier run are not counted again.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

# honcho hands each process PORT (5000 unless told): give the web process the announced port.
.venv/bin/honcho start -f "${PROCFILE:-Procfile}" --port "$PORT" &
HONCHO=$!
trap 'kill -TERM "$HONCHO" 2>/dev/null || true' INT TERM

# Wait until the web server answers HTTP (loading Django and torch takes a while on a cold start).
if ! .venv/bin/python - "$URL/accounts/login/" "$HONCHO" <<'PY'
import os, sys, time, urllib.error, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + float(os.environ.get("WEB_START_TIMEOUT", "180"))
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)  # honcho ended: a process failed to start
    try:
        urllib.request.urlopen(url, timeout=30).close()
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # it answered (e.g. 503 while the broker is down)
    except OSError:
        time.sleep(0.3)
sys.exit(1)
PY
then
  echo "sceneclf: the web server did not answer on $URL; see the log above." >&2
  kill -TERM "$HONCHO" 2>/dev/null || true
  wait "$HONCHO" || true
  exit 1
fi

cat <<MSG

  sceneclf is running at  $URL/
  demo logins (password: sceneclf-demo)
    owner      demo_owner
    annotator  demo_annotator   (also demo_annotator2)
    reviewer   demo_reviewer
  API docs:  $URL/api/v1/docs    health: /api/v1/health
  (DEBUG is off; DJANGO_DEBUG=1 make run turns it on)

MSG
wait "$HONCHO"
