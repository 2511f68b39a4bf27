"""Predict endpoint latency and throughput, beside the bare model forward for the same texts.

    .venv/bin/python benchmarks/predict.py [--json OUT] [--n 200] [--backbone NAME] [--threads N] \
        [--cascade lora|prefix|zero_shot [--cascade-n 60]] [--shadow]

Builds a throw-away data dir with the demo project (`bootstrap_demo`), trains route 1 and publishes it through
the app's services, starts gunicorn on a free loopback port, then measures over HTTP with a project API
token: one text per request (p50/p99), and batches. The same published model is loaded in this process too,
and `predict_with` (extract + head, no HTTP, no logging) is timed on the same texts in blocks that alternate
with the HTTP ones; the target is issue 14's p50 <= 1.2 x the bare forward + 5 ms.

With `--cascade ROUTE` a re-check version of that route is trained too (a few `lora` / `prefix` steps on the
demo's gold labels; `zero_shot` from its taxonomy) and set as the demo's cascade with tau_recheck 1 and no
cap, so every text goes through both stages when the cascade is on. One-text requests are then timed in
alternating blocks, cascade off (primary only) and on, in the same server, beside the bf16 matmul peak
measured before and after.

With `--shadow` a second version is trained and one-text p50 is measured side by side with and without it
as the shadow (alternating blocks on the same server, so both see the same load); the shadow rows are
counted once the server has stopped (none may be lost).

The shared cache (throttle counters, change stamps) is Redis when REDIS_URL is set, as `make run` picks it when
a Redis answers; without it, the database's cache table (the embedded fallback)."""

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

from machine import cpu_model, loadavg
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
    info = {"secret": token.secret, "version": run.model_version.ref}
    if sys.argv[2] == "shadow":
        second = training.start_training_run(project=project, params=params, trigger="cli", dispatch=False)
        training.execute_training_run(second.id)
        second.refresh_from_db()
        info["shadow"] = second.model_version.number
    elif sys.argv[2]:
        from modeling.services.cascade import update_cascade_settings

        steps = {"epochs": 0.05, "checkpoint_every": 1000} if sys.argv[2] in ("lora", "prefix") else {}
        recheck = training.start_training_run(project=project, route=sys.argv[2], params=steps, trigger="cli",
                                              dispatch=False)  # fmt: skip
        training.execute_training_run(recheck.id)
        recheck.refresh_from_db()
        if recheck.status != "succeeded":
            raise SystemExit("training the re-check version failed: " + recheck.error)
        update_cascade_settings(project=project, enabled=False, recheck_version_number=recheck.model_version.number,
                                tau_recheck=1.0, max_share=1.0, window_seconds=60, combine_rule="product")  # fmt: skip
        info["recheck_version"] = recheck.model_version.ref
    print(json.dumps(info))
    """
)


# Sets (argv[1] = a version number) or removes (argv[1] = "off") the shadow of the demo project.
SHADOW = textwrap.dedent(
    """
    import sys
    import django
    django.setup()
    from labeling.models import Project
    from modeling.models import ModelVersion
    from modeling.services import aliases

    project = Project.objects.get(slug="demo")
    if sys.argv[1] == "off":
        if ModelVersion.objects.filter(project=project, alias="shadow").exists():
            aliases.remove_alias(project=project, alias="shadow")
    else:
        aliases.set_alias(version=ModelVersion.objects.get(project=project, number=int(sys.argv[1])), alias="shadow")
    """
)

COUNT_ROLES = textwrap.dedent(
    """
    import json
    import django
    django.setup()
    from django.db.models import Count
    from feedback.models import PredictionLog

    print(json.dumps(dict(PredictionLog.objects.values_list("role").annotate(n=Count("id")))))
    """
)


def demo_texts() -> list[str]:
    lines = (ROOT / "labeling" / "demo" / "feedback.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


class FreshTexts:
    """The demo texts, each handed out once with a running number: a served process keeps the features of
    the texts it saw last (SERVING_RECENT_FEATURES), so a repeated text would time a lookup, not the model."""

    def __init__(self, base: list[str]) -> None:
        self.base, self.count = base, 0

    def take(self, n: int) -> list[str]:
        start, self.count = self.count, self.count + n
        return [f"{self.base[i % len(self.base)]}（{i}）" for i in range(start, start + n)]


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
        # The benchmark sends more than a client's per-minute share: the limits are not what is measured.
        **{f"THROTTLE_{scope}": "1000000/min" for scope in ("TOKEN", "TOKEN_IP", "PREDICT", "PREDICT_IP")},
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


def measure_http(port: int, secret: str, texts: FreshTexts, n: int, env: dict[str, str], threads: int) -> dict:
    """One-text requests over HTTP and the bare forward of the same texts in this process, in alternating
    blocks (so a change of load hits both alike), after an untimed pass over as many texts on both sides (the
    first text of each length builds its kernels); then batches over HTTP."""
    client = Client(port, secret)
    bare = BareForward(env, threads)
    for text in texts.take(len(texts.base)):
        client.post({"text": text})
        bare.time(text)
    one: list[float] = []
    forward: list[float] = []
    block = max(1, n // 10)
    for start in range(0, n, block):
        chunk = texts.take(min(block, n - start))
        one += [client.post({"text": text})[0] for text in chunk]
        forward += [bare.time(text) for text in chunk]
    batches = {}
    for size in (8, 32, 128):
        batches[size] = statistics.median(client.post({"texts": texts.take(size)})[0] for _ in range(3))
    return {"one_ms": one, "bare_ms": forward, "batch_ms": batches}


def setup_django_here(env: dict[str, str]) -> None:
    """This process on the benchmark's settings and database (once)."""
    import django

    if os.environ.get("DJANGO_SETTINGS_MODULE") == env["DJANGO_SETTINGS_MODULE"]:
        return
    os.environ.update({k: env[k] for k in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "SCENECLF_DATA_DIR",
                                           "MODEL_ROOT", "FEATURE_CACHE_DIR", "TORCH_THREADS")})  # fmt: skip
    sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
    django.setup()


def set_cascade(enabled: bool) -> None:
    from modeling.models import CascadeSettings

    for settings in CascadeSettings.objects.filter(project__slug="demo"):  # save(): servers see the change at once
        settings.enabled = enabled
        settings.save(update_fields=["enabled"])


def measure_cascade(env: dict[str, str], port: int, secret: str, texts: FreshTexts, n: int) -> dict:
    """One-text requests in alternating blocks of 10, cascade off and on, so load changes hit both alike."""
    setup_django_here(env)
    client = Client(port, secret)
    times: dict[str, list[float]] = {"primary": [], "cascade": []}
    stage_ms: dict[str, list[float]] = {"primary": [], "recheck": []}
    set_cascade(True)
    for text in texts.take(3):  # the first re-check loads the decoder in the worker
        client.post({"text": text})
    while len(times["cascade"]) < n:
        for side in ("primary", "cascade"):
            set_cascade(side == "cascade")
            for text in texts.take(10):
                elapsed, body = client.post({"text": text})
                times[side].append(elapsed)
                if side == "cascade":
                    if body["stage"] != "recheck":
                        raise RuntimeError(f"expected a re-check, got {body['stages']}")
                    for stage in body["stages"]:
                        stage_ms[stage["stage"]].append(stage["ms"])
    set_cascade(False)
    return {"times": times, "stage_ms": stage_ms}


def measure_shadow_side_by_side(
    port: int, secret: str, texts: FreshTexts, n: int, env: dict[str, str], shadow: int, blocks: int = 4
) -> dict:
    """Single-text latency in alternating blocks: without a shadow, with one, without, with..."""
    client = Client(port, secret)
    times: dict[str, list[float]] = {"off": [], "on": []}
    per_block = max(1, n // blocks)
    shadowed = 0
    for block in range(2 * blocks):
        mode = "on" if block % 2 else "off"
        subprocess.run([PY, "-c", SHADOW, str(shadow) if mode == "on" else "off"], cwd=ROOT, env=env, check=True)
        for text in texts.take(3):  # the first requests after a switch load the shadow or drop it
            client.post({"text": text})
        shadowed += 3 if mode == "on" else 0
        times[mode] += [client.post({"text": text})[0] for text in texts.take(per_block)]
        shadowed += per_block if mode == "on" else 0
        time.sleep(0.5)  # the shadow queue drains before the next switch
    return {"off_ms": times["off"], "on_ms": times["on"], "shadowed_requests": shadowed}


class BareForward:
    """The published model loaded in this process: `predict_with` (extract + head), no HTTP, no logging."""

    def __init__(self, env: dict[str, str], threads: int) -> None:
        setup_django_here(env)
        import torch

        torch.set_num_threads(threads)
        from labeling.models import Project
        from modeling.selectors.models import published_version
        from modeling.services.serving import load_version, predict_with

        self._predict = predict_with
        self.model = load_version(published_version(Project.objects.get(slug="demo")))

    def time(self, text: str) -> float:
        started = time.perf_counter()
        self._predict(self.model, [text])
        return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--n", type=int, default=200, help="single-text requests to time")
    parser.add_argument("--backbone", default="", help="default: settings.DEFAULT_BACKBONE")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir")
    parser.add_argument("--cascade", choices=["lora", "prefix", "zero_shot"], default="", help="re-check route")
    parser.add_argument("--cascade-n", type=int, default=60, help="one-text requests per side with --cascade")
    parser.add_argument("--shadow", action="store_true", help="also measure p50 with a shadow version on")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="sceneclf-bench-predict-"))
    (data_dir / "staticfiles").mkdir()  # whitenoise expects STATIC_ROOT to exist
    env = make_env(data_dir, args.threads)
    server = None
    try:
        subprocess.run([PY, "manage.py", "migrate", "--run-syncdb", "-v0"], cwd=ROOT, env=env, check=True)
        # Without REDIS_URL the throttles' cache is a database table, which syncdb does not make.
        subprocess.run([PY, "manage.py", "createcachetable", "-v0"], cwd=ROOT, env=env, check=True)
        print("training the demo model ...", file=sys.stderr)
        second = "shadow" if args.shadow else args.cascade
        setup = subprocess.run([PY, "-c", SETUP, args.backbone, second], cwd=ROOT, env=env, check=True,
                               capture_output=True, text=True)  # fmt: skip
        info = json.loads(setup.stdout.strip().splitlines()[-1])
        port = free_port()
        server = subprocess.Popen(
            [PY, "-m", "gunicorn", "sceneclf_site.wsgi:application", "-b", f"127.0.0.1:{port}",
             "--workers", "1", "--threads", "1", "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        wait_for_server(port, server)
        texts = FreshTexts(demo_texts())
        if args.cascade:
            peak_before = bf16_peak()
            cascade = measure_cascade(env, port, info["secret"], texts, args.cascade_n)
            peaks = [peak_before, bf16_peak()]
        http_result = measure_http(port, info["secret"], texts, args.n, env, args.threads)
        if args.shadow:
            shadow_result = measure_shadow_side_by_side(port, info["secret"], texts, args.n, env, info["shadow"])
        server.terminate()
        server.wait(timeout=30)
        server = None
        if args.shadow:
            roles = subprocess.run(
                [PY, "-c", COUNT_ROLES], cwd=ROOT, env=env, check=True, capture_output=True, text=True
            )
            shadow_result["logged_roles"] = json.loads(roles.stdout.strip().splitlines()[-1])
    finally:
        if server is not None:
            server.terminate()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    one, bare = http_result["one_ms"], http_result["bare_ms"]
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
        "p50_over_bare": round(p50_one / bare_one, 3),
        "cache": "redis" if env.get("REDIS_URL") else "database table",
        "target_p50_ms": round(1.2 * bare_one + 5, 2),  # issue 14: 1.2 x the bare forward + 5 ms
    }
    result["meets_target"] = result["p50_ms_one"] <= result["target_p50_ms"]
    if args.cascade:
        result["cascade"] = cascade_summary(args.cascade, info, cascade, peaks)
    if args.shadow:
        result["shadow"] = shadow_summary(shadow_result)
        result["shadow"]["bf16_matmul_peak_gflops_one_thread"] = bf16_peak()
        result["shadow"]["cpu"] = cpu_model()
        result["shadow"]["loadavg"] = loadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


def bf16_peak() -> float:
    """The bf16 matmul peak of this machine right now, on one thread as a predict request runs."""
    import torch
    from extract import matmul_gflops

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return round(matmul_gflops(torch.bfloat16, repeats=3), 1)
    finally:
        torch.set_num_threads(threads)


def cascade_summary(route: str, info: dict, measured: dict, peaks: list[float]) -> dict:
    primary, both = measured["times"]["primary"], measured["times"]["cascade"]
    recheck_ms = statistics.median(measured["stage_ms"]["recheck"])
    return {
        "route": route,
        "recheck_version": info["recheck_version"],
        "n_per_side": len(both),
        "primary_only_p50_ms": round(statistics.median(primary), 2),
        "primary_only_p99_ms": round(percentile(primary, 99), 2),
        "cascade_p50_ms": round(statistics.median(both), 2),
        "cascade_p99_ms": round(percentile(both, 99), 2),
        "cascade_over_primary_p50": round(statistics.median(both) / statistics.median(primary), 2),
        "primary_stage_p50_ms": round(statistics.median(measured["stage_ms"]["primary"]), 2),
        "recheck_stage_p50_ms": round(recheck_ms, 2),
        "bf16_matmul_peak_gflops_one_thread": peaks,
        "cpu": cpu_model(),
        "loadavg": loadavg(),
    }


def shadow_summary(measured: dict) -> dict:
    off, on = statistics.median(measured["off_ms"]), statistics.median(measured["on_ms"])
    return {
        "p50_ms_without": round(off, 2),
        "p50_ms_with": round(on, 2),
        "p99_ms_without": round(percentile(measured["off_ms"], 99), 2),
        "p99_ms_with": round(percentile(measured["on_ms"], 99), 2),
        "ratio_p50": round(on / off, 3),
        "limit_ratio": 1.3,
        "meets_limit": on / off <= 1.3,
        "shadowed_requests": measured["shadowed_requests"],
        "logged_roles": measured["logged_roles"],
        "no_row_lost": measured["logged_roles"].get("shadow", 0) == measured["shadowed_requests"],
    }


if __name__ == "__main__":
    main()
