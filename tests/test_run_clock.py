"""`make run` prints one clock: honcho's line stamps and the app's log times are in the same zone."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = (
    "import django, logging, http.server, os; django.setup(); "
    "logging.getLogger('sceneclf').warning('clock check'); "
    "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), http.server.BaseHTTPRequestHandler).serve_forever()"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seconds(clock: str) -> int:
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def test_honcho_and_app_log_lines_show_the_same_time(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(f'web: {sys.executable} -c "{WEB}"\n')
    env = {**os.environ, "TZ": "UTC", "PROCFILE": str(procfile), "PORT": str(_free_port())}
    env["DJANGO_SETTINGS_MODULE"] = "sceneclf_site.settings.local"
    run = subprocess.Popen(
        ["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    line = ""
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = run.stdout.readline()  # type: ignore[union-attr]
            if "clock check" in line or not line:
                break
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
    found = re.match(r"(\d\d:\d\d:\d\d) web\.1\s*\| \d{4}-\d\d-\d\d (\d\d:\d\d:\d\d),\d+ WARNING", line)
    assert found, line
    apart = abs(_seconds(found.group(1)) - _seconds(found.group(2))) % 86400
    assert min(apart, 86400 - apart) < 120, line
