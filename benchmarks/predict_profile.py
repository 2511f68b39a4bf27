"""Where the time of one predict request goes: stage timers around the request path, plus cProfile's view of
the middleware, beside the bare forward. Same set-up as benchmarks/predict.py (demo project, route 1).

    .venv/bin/python benchmarks/predict_profile.py [--n 200] [--json OUT] [--keep]

In this process the WSGI application is called directly (no socket, no gunicorn) with a project API token,
one text per request, and these functions are timed on every call: token authentication (with its token
query, the creator check and the last-used update inside it), throttles, permission (the project lookup),
the served-version lookup (published-version query, label-mapping refresh), the forward (`predict_with`),
PII masking + hashing, the log insert, the review-queue insert and JSON rendering. "other" is the rest of
the WSGI call: Django's handler, middleware, DRF's dispatch. Then the same requests run under cProfile and
the middleware hooks are listed by cumulative time. HTTP + gunicorn's share is what benchmarks/predict.py
reports beyond this in-process total."""

from __future__ import annotations

import argparse
import cProfile
import inspect
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from predict import PY, ROOT, SETUP, demo_texts, make_env

STAGES: dict[str, list[float]] = defaultdict(list)
_current: dict[str, float] = defaultdict(float)


def timed(owner: Any, attr: str, name: str) -> None:
    """Replace owner.attr by a wrapper adding its wall time to the current request's stage `name`. A name the
    profiled tree does not have (the script also profiles older commits) is left out."""
    if not hasattr(owner, attr):
        return
    static = isinstance(inspect.getattr_static(owner, attr), staticmethod)
    original = getattr(owner, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return original(*args, **kwargs)  # e.g. the log writer's thread: not the request's time
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _current[name] += (time.perf_counter() - started) * 1000

    setattr(owner, attr, staticmethod(wrapper) if static else wrapper)


def instrument() -> None:
    from django.db.models.query import QuerySet
    from rest_framework.renderers import JSONRenderer
    from rest_framework.views import APIView

    import feedback.services.predict as predict_service
    import feedback.services.review_queue as review_queue
    import labeling.authentication as auth
    import modeling.services.serving as serving

    try:
        import modeling.services.cascade as cascade_service
    except ImportError:  # older trees have no cascade
        cascade_service = None

    timed(auth.ProjectTokenAuthentication, "authenticate", "auth")
    timed(auth.ProjectTokenAuthentication, "_valid_token", "auth: token query + creator check")
    timed(auth, "creator_vouches", "auth: creator check")
    timed(APIView, "check_throttles", "throttles")
    timed(APIView, "check_permissions", "permission (project lookup)")
    timed(predict_service, "parse_predict_request", "parse body")
    timed(predict_service, "get_serving_model", "served version")
    timed(predict_service, "serving_model_for", "served version")
    timed(predict_service, "serving_aliases", "served version: aliases query")
    timed(serving, "published_version_id", "served version: published-version query")
    timed(serving, "_refresh_label_mapping", "served version: label-mapping refresh")
    timed(predict_service, "predict_with", "forward (predict_with)")
    timed(cascade_service, "predict_with", "forward (predict_with)")
    timed(predict_service, "log_predictions", "log")
    timed(predict_service, "mask_and_hash", "log: mask + hash")
    timed(QuerySet, "bulk_create", "log: insert")
    timed(auth, "record_use", "auth: last-used update")
    timed(review_queue, "queue_abstained", "log: review-queue insert")
    timed(JSONRenderer, "render", "JSON rendering")
    timed(predict_service, "normalize_text", "log: mask + hash: normalise")
    timed(predict_service, "mask_pii", "log: mask + hash: mask PII")


def wsgi_request(application: Any, slug: str, secret: str, text: str) -> tuple[int, bytes]:
    body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/api/v1/projects/{slug}/predict",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Token {secret}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    status: list[str] = []
    chunks = application(environ, lambda s, headers, exc_info=None: status.append(s))
    data = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    return int(status[0].split()[0]), data


def run_requests(application: Any, secret: str, texts: list[str], n: int) -> list[float]:
    totals = []
    for i in range(n):
        _current.clear()
        started = time.perf_counter()
        code, data = wsgi_request(application, "demo", secret, texts[i % len(texts)])
        totals.append((time.perf_counter() - started) * 1000)
        if code != 200:
            raise RuntimeError(f"HTTP {code}: {data[:300]!r}")
        for name, ms in _current.items():
            STAGES[name].append(ms)
        for name in STAGES:
            if name not in _current:
                STAGES[name].append(0.0)
    return totals


MIDDLEWARE_HOOKS = ("process_request", "process_view", "process_response", "process_exception", "__call__")


def middleware_profile(application: Any, secret: str, texts: list[str], n: int) -> dict[str, float]:
    """Cumulative ms per request of each middleware hook, from cProfile (own hook only: the inner chain of a
    plain __call__ middleware is subtracted by listing only hooks that do not wrap the view)."""
    from django.conf import settings

    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        wsgi_request(application, "demo", secret, texts[i % len(texts)])
    profiler.disable()
    stats = pstats.Stats(profiler)
    modules = {path.rsplit(".", 1)[0] for path in settings.MIDDLEWARE}
    out: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func not in MIDDLEWARE_HOOKS or func == "__call__":
            continue
        dotted = filename.replace(os.sep, ".")
        for module in modules:
            if dotted.endswith(module + ".py") or dotted.endswith(module.replace(".", ".") + ".__init__.py"):
                out[f"{module}.{func}"] = out.get(f"{module}.{func}", 0.0) + cumulative * 1000 / n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse (or keep) this data dir")
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="sceneclf-bench-profile-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**make_env(data_dir, threads=1), "SERVING_RECENT_FEATURES": "0"}  # the texts repeat: run the model
    try:
        info = prepare(data_dir, env)
        result = profile_in_process(env, info["secret"], args.n)
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


def prepare(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """The demo project with a published model and a token in data_dir (once: a later run reuses it)."""
    info_file = data_dir / "setup.json"
    if info_file.exists():
        return json.loads(info_file.read_text())
    (data_dir / "staticfiles").mkdir(exist_ok=True)
    subprocess.run([PY, "manage.py", "migrate", "--run-syncdb", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([PY, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True)  # without REDIS_URL
    print("training the demo model ...", file=sys.stderr)
    setup = subprocess.run([PY, "-c", SETUP, "", ""], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    info = json.loads(setup.stdout.strip().splitlines()[-1])
    info_file.write_text(json.dumps(info))
    return info


def profile_in_process(env: dict[str, str], secret: str, n: int) -> dict[str, Any]:
    os.environ.update({k: env[k] for k in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "SCENECLF_DATA_DIR",
                                           "MODEL_ROOT", "FEATURE_CACHE_DIR", "TORCH_THREADS",
                                           "SERVING_RECENT_FEATURES")})  # fmt: skip
    sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    texts = demo_texts()
    for text in texts[:5]:
        wsgi_request(application, "demo", secret, text)  # loads the model
    instrument()
    totals = run_requests(application, secret, texts, n)
    median = {name: round(statistics.median(values), 3) for name, values in STAGES.items()}
    mean = {name: round(statistics.fmean(values), 3) for name, values in STAGES.items()}
    top_level = [name for name in median if ":" not in name]
    other = statistics.median(
        [t - sum(STAGES[name][i] for name in top_level) for i, t in enumerate(totals)]
    )  # fmt: skip
    return {
        "n": n,
        "wsgi_total_p50_ms": round(statistics.median(totals), 3),
        "stage_p50_ms": median,
        "stage_mean_ms": mean,
        "other_p50_ms (handler, middleware, DRF dispatch)": round(other, 3),
        "middleware_hooks_ms_per_request (cProfile, inflated by profiling)": {
            k: round(v, 3) for k, v in middleware_profile(application, secret, texts, min(n, 100)).items()
        },
    }


if __name__ == "__main__":
    main()
