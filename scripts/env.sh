# Sourced by the run and test scripts: picks Redis when one answers, else the embedded broker.
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-sceneclf_site.settings.local}"
if [ -z "${REDIS_URL:-}" ] && [ -z "${CELERY_BROKER_URL:-}" ]; then
  if .venv/bin/python - <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(); s.settimeout(0.5)
try:
    s.connect(("127.0.0.1", 6379)); s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
  then
    export REDIS_URL="redis://127.0.0.1:6379/0"
    echo "broker: Redis at 127.0.0.1:6379"
  else
    echo "broker: no Redis answered on 127.0.0.1:6379; using the embedded SQLite broker (var/celery-broker.sqlite3)"
  fi
fi
