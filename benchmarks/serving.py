"""The predict path side by side in one run: the code before (an exported commit) and this tree, each served by
gunicorn as `make run` starts it (sceneclf_site/gunicorn_conf.py: gthread workers), against the bare forward,
the offline batched throughput of the same model, and the machine's bf16 matmul peak. Loopback only; every
phase is bounded in requests and in time.

    .venv/bin/python benchmarks/serving.py --before-commit COMMIT [--n 200] [--clients 20]
        [--load-requests 800] [--seconds 120] [--json OUT]

One data dir (SQLite unless DATABASE_URL is set; the cache is Redis when REDIS_URL is set, as in production)
holds the demo project with route 1 trained and published. For each variant:
- one text per request, one client (sequential): p50 / p99 over HTTP;
- `--clients` clients at once, each a keep-alive connection sending one text per request: throughput, p50,
  p99, errors; afterwards the server is stopped and the prediction log is counted (every answered request
  must have its row).
Then, in this process: the bare forward of one text (`predict_with`, one torch thread as serving uses),
the offline batched throughput (`Predictor.predict` on batches of 64 with all cores), the bf16 matmul peak
(as benchmarks/extract.py measures it) and the CPU model."""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import cpu_model, loadavg
from netutil import closed_loop, free_port, in_threads, percentile
from predict import PY, ROOT, SETUP, demo_texts, make_env

PREDICT_PATH = "/api/v1/projects/demo/predict"
ANSWERED: Counter = Counter()  # HTTP statuses of every predict sent, warm-ups included
ANSWERED_LOCK = threading.Lock()


def export_commit(commit: str, into: Path) -> Path:
    """The files of `commit`, read from this repository without touching its work tree."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def env_for(root: Path, base: dict[str, str], data_dir: Path) -> dict[str, str]:
    return {**base, "PYTHONPATH": f"{data_dir}{os.pathsep}{root}"}


def prepare(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    (data_dir / "staticfiles").mkdir(exist_ok=True)
    subprocess.run([PY, "manage.py", "migrate", "--run-syncdb", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([PY, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True)
    print("training the demo model ...", file=sys.stderr)
    setup = subprocess.run([PY, "-c", SETUP, "", ""], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(setup.stdout.strip().splitlines()[-1])


class Connection:
    def __init__(self, port: int, secret: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Token {secret}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def predict(self, text: str) -> tuple[int | str, float]:
        body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
        started = time.perf_counter()
        try:
            self.conn.request("POST", PREDICT_PATH, body=body, headers=self.headers)
            response = self.conn.getresponse()
            response.read()
            status: int | str = response.status
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            status = type(exc).__name__
        with ANSWERED_LOCK:
            ANSWERED[status] += 1
        return status, (time.perf_counter() - started) * 1000


def start_server(root: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [PY, "-m", "gunicorn", "sceneclf_site.wsgi:application", "--config", "python:sceneclf_site.gunicorn_conf",
         "--access-logfile", "/dev/null", "--log-level", "warning"],
        cwd=root, env={**env, "PORT": str(port)}, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/health")
            health = json.loads(conn.getresponse().read())
            if health.get("model", {}).get("status", "ok") != "loading":
                return server
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    server.terminate()
    raise RuntimeError("gunicorn did not answer")


def sequential(port: int, secret: str, texts: list[str], n: int) -> dict[str, Any]:
    client = Connection(port, secret)
    for text in texts[:10]:
        client.predict(text)
    times, statuses = [], Counter()
    for i in range(n):
        status, ms = client.predict(texts[i % len(texts)])
        statuses[status] += 1
        times.append(ms)
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(percentile(times, 99), 2),
            "errors": sum(v for k, v in statuses.items() if k != 200)}  # fmt: skip


def concurrent(port: int, secret: str, texts: list[str], clients: int, total: int, seconds: float) -> dict[str, Any]:
    in_threads(clients, lambda _: [Connection(port, secret).predict(t) for t in texts[:3]])

    def sender(offset: int) -> Callable[[], int | str]:
        client, step = Connection(port, secret), itertools.count(offset, 7)
        return lambda: client.predict(texts[next(step) % len(texts)])[0]

    latencies, statuses, wall = closed_loop(clients, total, time.monotonic() + seconds, sender)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "clients": clients,
        "requests": len(latencies),
        "ok": statuses.get(200, 0),
        "errors": sum(v for k, v in statuses.items() if k != 200),
        "statuses": {str(k): v for k, v in statuses.items()},
        "texts_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "p99_over_p50": round(p99 / p50, 2) if p50 else None,
    }


def count_logged(root: Path, env: dict[str, str]) -> int:
    code = ("import django; django.setup(); from feedback.models import PredictionLog; "
            "print(PredictionLog.objects.count())")  # fmt: skip
    out = subprocess.run([PY, "-c", code], cwd=root, env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def measure_variant(name: str, root: Path, env: dict[str, str], secret: str, texts: list[str], args) -> dict:
    print(f"serving {name} ...", file=sys.stderr)
    port = free_port()
    logged_before = count_logged(root, env)
    ANSWERED.clear()
    server = start_server(root, env, port)
    try:
        one = sequential(port, secret, texts, args.n)
        load = concurrent(port, secret, texts, args.clients, args.load_requests, args.seconds)
    finally:
        os.killpg(server.pid, 15)  # SIGTERM: workers finish their requests and flush what they buffer
        server.wait(timeout=60)
    answered = ANSWERED[200]
    logged = count_logged(root, env) - logged_before
    return {"one_text": one, "concurrent": load, "answered_200": answered, "logged_rows": logged}


def in_process(env: dict[str, str], texts: list[str], n: int) -> dict[str, Any]:
    os.environ.update({k: env[k] for k in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "SCENECLF_DATA_DIR",
                                           "MODEL_ROOT", "FEATURE_CACHE_DIR", "SERVING_RECENT_FEATURES")})  # fmt: skip
    sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
    import django
    import torch

    django.setup()
    from extract import matmul_gflops

    from labeling.models import Project
    from modeling.selectors.models import published_version
    from modeling.services.serving import load_version, predict_with

    torch.set_num_threads(1)
    model = load_version(published_version(Project.objects.get(slug="demo")))
    for text in texts[:10]:
        predict_with(model, [text])
    bare = []
    for i in range(n):
        started = time.perf_counter()
        model.predictor.predict([texts[i % len(texts)]])
        bare.append((time.perf_counter() - started) * 1000)
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    batch = [texts[i % len(texts)] for i in range(64)]
    model.predictor.predict(batch)
    rounds, started = 0, time.perf_counter()
    while rounds < 3 or time.perf_counter() - started < 10:
        model.predictor.predict(batch)
        rounds += 1
    offline = rounds * len(batch) / (time.perf_counter() - started)
    peak = max(matmul_gflops(torch.bfloat16, repeats=2) for _ in range(3))
    return {
        "bare_forward_p50_ms": round(statistics.median(bare), 2),
        "bare_forward_p99_ms": round(percentile(bare, 99), 2),
        "offline_batched_texts_per_s": round(offline, 1),
        "offline_batch_size": len(batch),
        "offline_torch_threads": cores,
        "matmul_gflops_bf16": round(peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-commit", required=True, help="the commit to compare against (git archive)")
    parser.add_argument("--n", type=int, default=200, help="sequential single-text requests per variant")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--load-requests", type=int, default=800)
    parser.add_argument("--seconds", type=float, default=120, help="time bound of each concurrent phase")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.load_requests > 5000 or args.clients > 64:
        raise SystemExit("keep the run bounded: at most 5000 requests and 64 clients")

    work = Path(tempfile.mkdtemp(prefix="sceneclf-bench-serving-"))
    data_dir = work / "data"
    data_dir.mkdir()
    # The texts repeat: with the served-features map off, every request and every offline batch runs the model.
    base_env = {**make_env(data_dir, os.cpu_count() or 1), "LOG_LEVEL": "WARNING", "SERVING_RECENT_FEATURES": "0",
                **{f"THROTTLE_{s}": "1000000/min" for s in ("TOKEN", "TOKEN_IP", "PREDICT", "PREDICT_IP")}}  # fmt: skip
    load_start = " ".join(loadavg())
    try:
        before_root = export_commit(args.before_commit, work / "before")
        info = prepare(data_dir, env_for(ROOT, base_env, data_dir))
        texts = demo_texts()
        variants = {
            "before": measure_variant("before", before_root, env_for(before_root, base_env, data_dir),
                                      info["secret"], texts, args),
            "after": measure_variant("after", ROOT, env_for(ROOT, base_env, data_dir), info["secret"], texts, args),
        }  # fmt: skip
        limits = in_process(env_for(ROOT, base_env, data_dir), texts, args.n)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bare, offline = limits["bare_forward_p50_ms"], limits["offline_batched_texts_per_s"]
    target = round(1.2 * bare + 5, 2)
    result = {
        "cpu": cpu_model(with_flags=True),
        "loadavg_start": load_start,
        "loadavg_end": " ".join(loadavg()),
        "before_commit": args.before_commit,
        "database": "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite",
        "cache": "redis" if os.environ.get("REDIS_URL") else "database table",
        **limits,
        "variants": variants,
        "target_one_text_p50_ms (1.2 x bare + 5)": target,
        "ratios": {
            name: {
                "one_text_p50_over_bare": round(v["one_text"]["p50_ms"] / bare, 2),
                "one_text_meets_target": v["one_text"]["p50_ms"] <= target,
                "concurrent_share_of_offline_throughput": round(v["concurrent"]["texts_per_s"] / offline, 3),
                "concurrent_p99_over_p50": v["concurrent"]["p99_over_p50"],
                "every_answer_logged": v["logged_rows"] == v["answered_200"],
            }
            for name, v in variants.items()
        },
    }
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
