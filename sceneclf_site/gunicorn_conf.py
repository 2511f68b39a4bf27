"""gunicorn settings for `make run` and production: gthread workers, sizes from Django settings (WEB_WORKERS,
WEB_THREADS, WEB_TIMEOUT_SECONDS; docs/OPERATIONS.md)."""

import os

from sceneclf_site.settings import base

bind = f"{os.environ.get('WEB_BIND', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = base.WEB_WORKERS
threads = base.WEB_THREADS
timeout = base.WEB_TIMEOUT_SECONDS
graceful_timeout = 30
# Load Django (and torch) once before forking: workers start answering at once and share the pages in memory.
preload_app = True
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# One control socket per data dir (gunicorn's default is one per user: a second instance would take it over).
control_socket = str(base.DATA_DIR / "gunicorn.ctl")


def pre_fork(server, worker):  # type: ignore[no-untyped-def]
    """Import every view (and what they import) once in the master, so no worker pays for it on its first
    request."""
    from django.urls import get_resolver

    get_resolver().check()  # resolves url_patterns, importing every view module


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    """Each web worker loads the published models in the background: the first predict does not wait for them
    (/api/v1/health shows the `model` component as "loading" until they are in)."""
    from modeling.services.serving import start_preload

    start_preload()


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    """A stopping worker stores the prediction-log rows it still buffers before it goes."""
    from feedback.services.log_writer import close_writer

    close_writer()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """prometheus_client's multiprocess mode: a dead worker's live gauges leave the next scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
