"""Load test of the web server as `make run` starts it (gunicorn, gthread): annotators submitting at once, and
predict clients. Loopback only; bounded in requests and in time.

    .venv/bin/python benchmarks/load.py [--database-url URL] [--submissions 1000] [--annotators 20]
        [--predict-requests 600] [--predict-clients 20] [--seconds 300] [--json OUT]

Without --database-url the embedded SQLite default is used, in a throw-away data dir. With a PostgreSQL URL
that database is FLUSHED first: give it one of your own.

Phase 1: every annotator logs in through the login form and runs two clients (two tabs), each looping
`GET workspace/next` then `POST annotations` until --submissions annotations were created. Both clients of one
annotator often hold the same item; the second POST is then a retry of a stored submission (200). Afterwards
the database is read back: stored = acknowledged, no item labelled twice by one person, the count of 5xx.

Phase 2 (--predict-requests > 0): the demo project is trained (route 1, real weights) and --predict-clients
threads post one text per request with an API token: p50/p99 and errors.

Both phases also measure, in the same run, a ceiling: the login page (a template, no writes) with the same
number of clients, so speeds can be read as a share of what this server does for a trivial page here.
Throttle rates are raised for the server under test (this measures capacity, not the limits)."""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

from machine import cpu_model
from netutil import closed_loop, free_port, in_threads, percentile

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PASSWORD = "load-test-pw-1"
LABELS = ["旅行", "支付", "物流", "售后", "账户"]
RETRIES = 60

SETUP = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from django.contrib.auth import get_user_model
    from labeling.models import Item, Role
    from labeling.services.items import get_or_create_item
    from labeling.services.projects import add_member, create_project
    from labeling.services.taxonomy import add_label, get_or_create_draft, publish_draft

    annotators, n_items, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    project = create_project(slug="load", name="Load", overlap_k=1, agreement_share=0.0,
                             retrain_every_n_gold=10**9)
    draft = get_or_create_draft(project=project)
    for order, key in enumerate(json.loads(sys.argv[4])):
        add_label(draft=draft, data={"key": key, "name": key, "hotkey": str(order + 1), "order": order,
                                     "definition": key, "decision_rules": key})
    publish_draft(draft=draft)
    users = []
    for i in range(annotators):
        user = get_user_model().objects.create_user(f"load{i}", password=password)
        add_member(project=project, user=user, role=Role.ANNOTATOR)
        users.append(user.username)
    for i in range(n_items):
        get_or_create_item(project=project, text=f"负载测试反馈第{i}条：订单{i % 97}号的问题", source="load")
    print(json.dumps({"users": users, "items": Item.objects.filter(project=project).count()}))
    """
)

PREDICT_SETUP = textwrap.dedent(
    """
    import json
    import django
    django.setup()
    from django.core.management import call_command
    from labeling.models import Project
    from labeling.services.projects import create_api_token
    from modeling.services import training, versions

    call_command("bootstrap_demo", verbosity=0)
    project = Project.objects.get(slug="demo")
    run = training.start_training_run(project=project, params={}, trigger="cli", dispatch=False)
    training.execute_training_run(run.id)
    run.refresh_from_db()
    if run.status != "succeeded":
        raise SystemExit("training failed: " + run.error)
    versions.publish_model_version(version=run.model_version)
    print(json.dumps({"secret": create_api_token(project=project, name="load").secret}))
    """
)

VERIFY = textwrap.dedent(
    """
    import json
    import django
    django.setup()
    from django.db.models import Count
    from labeling.models import Annotation
    rows = Annotation.objects.filter(item__project__slug="load")
    twice = rows.values("item_id", "annotator_id").annotate(n=Count("id")).filter(n__gt=1).count()
    print(json.dumps({"stored": rows.count(), "ids": sorted(rows.values_list("id", flat=True)), "twice": twice}))
    """
)


class Session:
    """One keep-alive HTTP connection with cookies (a browser tab)."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None) -> None:
        self.port = port
        self.cookies = dict(cookies or {})
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                # The server closed an idle keep-alive connection: reconnect once.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response.status, data

    def json(self, method: str, path: str, payload: dict | None = None, headers: dict | None = None):
        body = json.dumps(payload, ensure_ascii=False).encode() if payload is not None else None
        headers = {"Content-Type": "application/json", **(headers or {})}
        if "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        return self.request(method, path, body, headers)


def login(port: int, username: str) -> dict[str, str]:
    tab = Session(port)
    _, page = tab.request("GET", "/accounts/login/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    form = f"csrfmiddlewaretoken={token}&username={username}&password={PASSWORD}".encode()
    status, _ = tab.request("POST", "/accounts/login/", form, {"Content-Type": "application/x-www-form-urlencoded"})
    if status != 302:
        raise RuntimeError(f"login of {username} answered {status}")
    return tab.cookies


@dataclass
class Tally:
    target: int
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: int = 0
    statuses: Counter = field(default_factory=Counter)
    acknowledged: set = field(default_factory=set)
    created_ids: list = field(default_factory=list)
    next_ms: list = field(default_factory=list)
    post_ms: list = field(default_factory=list)

    def more(self) -> bool:
        with self.lock:
            return self.created < self.target and time.monotonic() < self.deadline


def call(tab: Session, method: str, path: str, payload: dict | None = None, headers: dict | None = None):
    """(status, body); status "timeout" or "conn_error" when no answer came (counted as errors)."""
    try:
        return tab.json(method, path, payload, headers)
    except TimeoutError:
        tab.conn.close()
        return "timeout", b""
    except (OSError, http.client.HTTPException):
        tab.conn.close()
        return "conn_error", b""


def annotate(port: int, cookies: dict[str, str], tally: Tally) -> None:
    tab = Session(port, cookies)
    base = "/api/v1/projects/load/"
    while tally.more():
        started = time.perf_counter()
        status, data = call(tab, "GET", base + "workspace/next")
        elapsed = (time.perf_counter() - started) * 1000
        with tally.lock:
            tally.statuses[f"next {status}"] += 1
            if isinstance(status, int):
                tally.next_ms.append(elapsed)
        if status != 200:
            time.sleep(0.2)  # no item (an error, or the server is restarting): wait a moment, ask again
            continue
        item = json.loads(data)["item"]
        if item is None:
            return
        body = {"item_id": item["id"], "label": LABELS[item["id"] % len(LABELS)], "time_ms": 1200}
        started = time.perf_counter()
        status, data = call(tab, "POST", base + "annotations", body)
        for _ in range(RETRIES):  # no answer (e.g. the server restarting): send the same submission again
            if status not in ("timeout", "conn_error"):
                break
            with tally.lock:
                tally.statuses[f"post {status}, retried"] += 1
            time.sleep(0.5)
            status, data = call(tab, "POST", base + "annotations", body)
        elapsed = (time.perf_counter() - started) * 1000
        with tally.lock:
            tally.statuses[f"post {status}"] += 1
            tally.post_ms.append(elapsed)
            if status in (200, 201):
                annotation_id = json.loads(data)["id"]
                tally.acknowledged.add(annotation_id)
                if status == 201:
                    tally.created += 1
                    tally.created_ids.append(annotation_id)


def ceiling(port: int, clients: int, seconds: float) -> float:
    """Requests per second for the login page (rendered, no writes) with `clients` threads."""

    def sender(_: int) -> Callable[[], int | str]:
        tab = Session(port)
        return lambda: tab.request("GET", "/accounts/login/")[0]

    _, statuses, wall = closed_loop(clients, None, time.monotonic() + seconds, sender)
    return sum(statuses.values()) / wall


def predict_load(port: int, secret: str, clients: int, total: int, deadline: float) -> dict:
    texts = [f"付款成功但订单{i}显示未支付" for i in range(50)] + [f"快递{i}天了还没到" for i in range(50)]
    headers = {"Authorization": f"Token {secret}"}

    def warm(_: int) -> None:
        tab = Session(port)
        for text in texts[:3]:
            call(tab, "POST", "/api/v1/projects/demo/predict", {"text": text}, headers)

    # Each web worker loads the model on its first predict: warm every worker (all clients at once), untimed.
    cold_s = in_threads(clients, warm)

    def sender(offset: int) -> Callable[[], int | str]:
        tab, step = Session(port), itertools.count(offset)

        def send() -> int | str:
            body = {"text": texts[next(step) % len(texts)]}
            return call(tab, "POST", "/api/v1/projects/demo/predict", body, headers)[0]

        return send

    latencies, statuses, wall = closed_loop(clients, total, deadline, sender)
    return {
        "clients": clients,
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "errors": sum(n for code, n in statuses.items() if code != 200),  # 4xx, 5xx, timeouts
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "req_per_s": round(sum(statuses.values()) / wall, 1),
        "warm_up_s": round(cold_s, 1),  # 3 requests per client while the workers load the model
    }


def make_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "sceneclf_site.settings.local",
            "SCENECLF_DATA_DIR": str(data_dir),
            "MODEL_ROOT": os.environ.get("MODEL_ROOT") or str(ROOT / "var" / "models"),
            "FEATURE_CACHE_DIR": str(data_dir / "features"),
            "CELERY_TASK_ALWAYS_EAGER": "true",  # no worker here: nothing this test triggers needs one
            "LOG_LEVEL": "WARNING",
            "SERVING_RECENT_FEATURES": "0",  # the predict texts repeat: each request runs the model
            **{f"THROTTLE_{scope}": "1000000/min" for scope in ("TOKEN", "TOKEN_IP", "PREDICT", "PREDICT_IP")},
        }
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [PY, "-m", "gunicorn", "sceneclf_site.wsgi:application", "--config", "python:sceneclf_site.gunicorn_conf",
         "--access-logfile", "/dev/null"],
        cwd=ROOT, env={**env, "PORT": str(port)}, start_new_session=True,  # its own group: killed as one
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {server.returncode}")
        try:
            Session(port).request("GET", "/accounts/login/")
            return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    raise RuntimeError("gunicorn did not answer")


def run_py(env: dict[str, str], code: str, *args: str) -> dict:
    out = subprocess.run([PY, "-c", code, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def annotation_phase(port: int, users: list[str], args: argparse.Namespace, server: dict, env: dict) -> dict:
    cookies = {user: login(port, user) for user in users}
    tally = Tally(target=args.submissions, deadline=time.monotonic() + args.seconds)
    threads = [threading.Thread(target=annotate, args=(port, cookies[u], tally)) for u in users for _ in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    restarted_at = None
    if args.restart_at:
        while tally.more() and tally.created < args.restart_at:
            time.sleep(0.05)
        if tally.more():  # stop the web server under load (in-flight requests are cut), then start it again
            restarted_at = tally.created
            os.killpg(server["proc"].pid, signal.SIGKILL)  # master and workers at once
            server["proc"].wait(timeout=60)
            server["proc"] = start_server(env, port)
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"tally": tally, "wall_s": wall, "restarted_at": restarted_at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (FLUSHED); default: SQLite file")
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--predict-requests", type=int, default=600)
    parser.add_argument("--predict-clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=300, help="time bound of each phase")
    parser.add_argument("--restart-at", type=int, default=0, help="kill and restart the web server after N submissions")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.submissions > 5000 or args.predict_requests > 5000:
        raise SystemExit("keep the test bounded: at most 5000 submissions and 5000 predictions")

    data_dir = Path(tempfile.mkdtemp(prefix="sceneclf-bench-load-"))
    (data_dir / "staticfiles").mkdir()
    env = make_env(data_dir, args.database_url)
    server: dict = {"proc": None}
    try:
        if args.database_url:
            subprocess.run([PY, "manage.py", "flush", "--noinput", "-v0"], cwd=ROOT, env=env, check=False)
        subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run([PY, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True)
        setup = run_py(
            env, SETUP, str(args.annotators), str(int(args.submissions * 1.2) + 50), PASSWORD, json.dumps(LABELS)
        )
        secret = run_py(env, PREDICT_SETUP)["secret"] if args.predict_requests else None
        web = run_py(env, "import json; from sceneclf_site.settings import base as b; "
                     "print(json.dumps([b.WEB_WORKERS, b.WEB_THREADS]))")  # fmt: skip
        port = free_port()
        server["proc"] = start_server(env, port)
        clients = 2 * args.annotators
        login_rps = ceiling(port, clients, 5)
        phase = annotation_phase(port, setup["users"], args, server, env)
        verify = run_py(env, VERIFY)
        predict = None
        if secret:
            predict_ceiling = ceiling(port, args.predict_clients, 5)
            predict = predict_load(
                port, secret, args.predict_clients, args.predict_requests, time.monotonic() + args.seconds
            )
            predict["share_of_login_page_rate"] = round(predict["req_per_s"] / predict_ceiling, 3)
            predict["login_page_req_per_s"] = round(predict_ceiling, 1)
    finally:
        if server["proc"] is not None:
            server["proc"].terminate()
            server["proc"].wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)

    tally, wall = phase["tally"], phase["wall_s"]
    requests_per_s = (len(tally.next_ms) + len(tally.post_ms)) / wall
    result = {
        "cpu": cpu_model(),
        "database": "postgresql" if args.database_url else "sqlite",
        "web_workers_threads": web,
        "annotators": args.annotators,
        "clients": clients,
        "created": tally.created,
        "acknowledged": len(tally.acknowledged),
        "stored": verify["stored"],
        "stored_equals_acknowledged": set(verify["ids"]) == tally.acknowledged,
        "created_twice": len(tally.created_ids) - len(set(tally.created_ids)),
        "item_labelled_twice_by_one_person": verify["twice"],
        "statuses": dict(sorted(tally.statuses.items())),
        "server_errors": sum(n for key, n in tally.statuses.items() if key.split()[1].startswith("5")),
        "unanswered_tries": sum(n for key, n in tally.statuses.items() if not key.split()[1].isdigit()),
        "next_p50_ms": round(percentile(tally.next_ms, 50), 1),
        "next_p95_ms": round(percentile(tally.next_ms, 95), 1),
        "post_p50_ms": round(percentile(tally.post_ms, 50), 1),
        "post_p95_ms": round(percentile(tally.post_ms, 95), 1),
        "restarted_web_after": phase["restarted_at"],
        "wall_s": round(wall, 1),
        "submissions_per_s": round(tally.created / wall, 1),
        "requests_per_s": round(requests_per_s, 1),
        "login_page_req_per_s": round(login_rps, 1),
        "share_of_login_page_rate": round(requests_per_s / login_rps, 3),
        "predict": predict,
    }
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
