"""No log line carries feedback text: the configured handlers (Django's and the Celery worker's) withhold
exception messages and mask PII, while ids, timings and infrastructure errors stay readable."""

from __future__ import annotations

import io
import logging

from celery import signals

from sceneclf_site.log_filters import RedactUserText

TEXT = "我的快递一直没到 电话13812345678"


def configured_handler() -> logging.Handler:
    return next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactUserText) for f in h.filters))


def logged(emit) -> str:  # type: ignore[no-untyped-def]
    handler = configured_handler()
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        emit(logging.getLogger("sceneclf.test"))
    finally:
        handler.setStream(previous)
    return buffer.getvalue()


def test_an_exception_quoting_feedback_text_is_logged_without_it():
    def emit(logger: logging.Logger) -> None:
        try:
            try:
                raise KeyError(TEXT)
            except KeyError as inner:
                raise ValueError(f"could not classify {TEXT!r}") from inner
        except ValueError as exc:
            logger.exception("task failed: %s", exc)
            logger.error("Task x raised unexpected: %(exc)s", {"exc": repr(exc)}, exc_info=exc)

    output = logged(emit)
    assert "我的快递" not in output and "13812345678" not in output
    assert "ValueError: (message withheld" in output and "KeyError: (message withheld" in output
    assert "Traceback (most recent call last)" in output and "test_log_redaction.py" in output


def test_ids_timings_and_infrastructure_errors_stay_readable():
    task_id = "c2b2c205-e0c1-4744-8d30-b69fc1381234"

    def emit(logger: logging.Logger) -> None:
        logger.info("Task %s succeeded in %ss, contact 13912345678", task_id, 0.013812345678)
        try:
            raise ConnectionRefusedError(111, "Connection refused to 127.0.0.1:6379")
        except OSError:
            logger.exception("broker down")

    output = logged(emit)
    assert task_id in output and "0.013812345678s" in output and "<PHONE>" in output
    assert "Connection refused to 127.0.0.1:6379" in output


def test_the_celery_worker_handlers_get_the_filter():
    logger = logging.getLogger("celery-worker-test")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        signals.after_setup_logger.send(sender=None, logger=logger, loglevel=logging.INFO, logfile=None,
                                        format="", colorize=False)  # fmt: skip
        assert any(isinstance(f, RedactUserText) for f in handler.filters)
    finally:
        logger.removeHandler(handler)
