"""Predict endpoint latency and throughput, beside the bare model forward for the same texts.

    .venv/bin/python benchmarks/predict.py [--json OUT] [--n 200] [--backbone NAME] [--threads N]

Builds a throw-away data dir with the demo project (`bootstrap_demo`), trains route 1 and publishes it through
the app's services, starts gunicorn on a free loopback port, then measures over HTTP with a project API
token: one text per request (p50/p99), and batches. Afterwards, in this process, the same published model
is loaded and `predict_with` (extract + head, no HTTP, no logging) is timed on the same texts."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from netutil import free_port, percentile

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

SETUP = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from django.core.management import call_command
    from labeling.models import Project
    from labeling.services.projects import create_api_token
    from modeling.services import training, versions

    call_command("bootstrap_demo", verbosity=0)
    project = Project.objects.get(slug="demo")
    params = {"backbone": sys.argv[1]} if sys.argv[1] else {}
    run = training.start_training_run(project=project, params=params, trigger="cli", dispatch=False)
    training.execute_training_run(run.id)
    run.refresh_from_db()
    if run.status != "succeeded":
        raise SystemExit("training failed: " + run.error)
    versions.publish_model_version(version=run.model_version)
    token = create_api_token(project=project, name="benchmark")
    print(json.dumps({"secret": token.secret, "version": run.model_version.ref}))
    """
)


def demo_texts() -> list[str]:
    lines = (ROOT / "labeling" / "demo" / "feedback.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def make_env(data_dir: Path, threads: int) -> dict[str, str]:
    """A settings module in the temp dir: local settings, with tables made by syncdb (no migrations needed)."""
    (data_dir / "bench_settings.py").write_text(
        "from sceneclf_site.settings.local import *  # noqa\n"
        "DEBUG = False  # as in production: no per-query debug bookkeeping\n"
        "MIGRATION_MODULES = {'labeling': None, 'modeling': None, 'feedback': None}\n"
        "LOGGING = {'version': 1, 'disable_existing_loggers': False, 'root': {'level': 'WARNING'}}\n"
    )
    from_settings = os.environ.get("MODEL_ROOT") or str(ROOT / "var" / "models")
    return {
        **os.environ,
        "PYTHONPATH": f"{data_dir}{os.pathsep}{ROOT}",
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "SCENECLF_DATA_DIR": str(data_dir),
        "MODEL_ROOT": from_settings,
        "FEATURE_CACHE_DIR": os.environ.get("FEATURE_CACHE_DIR", str(ROOT / "var" / "features")),
        "TORCH_THREADS": str(threads),
        "CELERY_TASK_ALWAYS_EAGER": "true",
    }


class Client:
    def __init__(self, port: int, secret: str, slug: str = "demo") -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.path = f"/api/v1/projects/{slug}/predict"
        self.headers = {"Authorization": f"Token {secret}", "Content-Type": "application/json"}

    def post(self, body: dict) -> tuple[float, dict]:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        started = time.perf_counter()
        self.conn.request("POST", self.path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
        return elapsed, json.loads(data)


def wait_for_server(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/health")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server did not start")


def measure_http(port: int, secret: str, texts: list[str], n: int) -> dict:
    client = Client(port, secret)
    for text in texts[:5]:  # first requests load the model in the worker
        client.post({"text": text})
    one = [client.post({"text": texts[i % len(texts)]})[0] for i in range(n)]
    batches = {}
    for size in (8, 32, 128):
        times = []
        for rep in range(3):
            start = (rep * size) % max(1, len(texts) - size)
            times.append(client.post({"texts": texts[start : start + size]})[0])
        batches[size] = statistics.median(times)
    return {"one_ms": one, "batch_ms": batches}


def measure_bare(env: dict[str, str], texts: list[str], n: int, threads: int) -> list[float]:
    os.environ.update({k: env[k] for k in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "SCENECLF_DATA_DIR",
                                           "MODEL_ROOT", "FEATURE_CACHE_DIR", "TORCH_THREADS")})  # fmt: skip
    sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
    import django
    import torch

    django.setup()
    torch.set_num_threads(threads)
    from labeling.models import Project
    from modeling.selectors.models import published_version
    from modeling.services.serving import load_version, predict_with

    model = load_version(published_version(Project.objects.get(slug="demo")))
    for text in texts[:5]:
        predict_with(model, [text])
    times = []
    for i in range(n):
        started = time.perf_counter()
        predict_with(model, [texts[i % len(texts)]])
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--n", type=int, default=200, help="single-text requests to time")
    parser.add_argument("--backbone", default="", help="default: settings.DEFAULT_BACKBONE")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="sceneclf-bench-predict-"))
    (data_dir / "staticfiles").mkdir()  # whitenoise expects STATIC_ROOT to exist
    env = make_env(data_dir, args.threads)
    server = None
    try:
        subprocess.run([PY, "manage.py", "migrate", "--run-syncdb", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run([PY, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True)  # without REDIS_URL
        print("training the demo model ...", file=sys.stderr)
        setup = subprocess.run([PY, "-c", SETUP, args.backbone], cwd=ROOT, env=env, check=True,
                               capture_output=True, text=True)  # fmt: skip
        info = json.loads(setup.stdout.strip().splitlines()[-1])
        port = free_port()
        server = subprocess.Popen(
            [PY, "-m", "gunicorn", "sceneclf_site.wsgi:application", "-b", f"127.0.0.1:{port}",
             "--workers", "1", "--threads", "1", "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        wait_for_server(port, server)
        texts = demo_texts()
        http_result = measure_http(port, info["secret"], texts, args.n)
        server.terminate()
        server.wait(timeout=30)
        server = None
        bare = measure_bare(env, texts, args.n, args.threads)
    finally:
        if server is not None:
            server.terminate()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    one = http_result["one_ms"]
    p50_one, bare_one = statistics.median(one), statistics.median(bare)
    largest = max(http_result["batch_ms"])
    result = {
        "model_version": info["version"],
        "threads": args.threads,
        "n": args.n,
        "p50_ms_one": round(p50_one, 2),
        "p99_ms_one": round(percentile(one, 99), 2),
        "bare_forward_ms_one": round(bare_one, 2),
        "bare_forward_p99_ms_one": round(percentile(bare, 99), 2),
        "batch_ms": {str(size): round(ms, 2) for size, ms in http_result["batch_ms"].items()},
        "throughput_texts_per_s": round(largest / (http_result["batch_ms"][largest] / 1000), 1),
        "target_p50_ms": round(1.5 * bare_one + 10, 2),
    }
    result["meets_target"] = result["p50_ms_one"] <= result["target_p50_ms"]
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
