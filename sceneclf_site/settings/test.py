"""Tests: fast hashing, isolated data dir. DATABASE_URL still picks PostgreSQL in CI."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import env_int, env_str

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATA_DIR = Path(env_str("SCENECLF_DATA_DIR", tempfile.mkdtemp(prefix="sceneclf-test-")))
ARTIFACT_ROOT = DATA_DIR / "artifacts"
FEATURE_CACHE_DIR = DATA_DIR / "features"
UPLOAD_DIR = DATA_DIR / "uploads"
PREDICTION_LOG_SPOOL_DIR = DATA_DIR / "prediction-spool"
# Most tests read the log right after a predict inside their own transaction, which no writer thread can
# see: rows are written inline here; tests/feedback/test_log_writer.py runs the buffered writer.
PREDICTION_LOG_FLUSH_MS = 0
# MODEL_ROOT stays where `manage.py backbones install` put the real weights.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LANGUAGE_CODE = "en"
CELERY_TASK_ALWAYS_EAGER = True  # most tests run tasks inline; tests/test_worker_roundtrip.py uses a real worker
CELERY_TASK_EAGER_PROPAGATES = True
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# A connection per request, as before persistent connections: the test database is dropped at the end, and
# a connection some helper thread kept open would block that on PostgreSQL.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 0)  # noqa: F405
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not :memory:, so a real worker process started by a test sees the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405

# Tests talk to the real Redis, on their own database index so a running `make run` never steals a task.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL

# Throttle counters in this process only, emptied before each test (tests/conftest.py). Rates are raised so
# that no other test trips them; tests/test_security.py restores the real defaults to prove they answer 429.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "sceneclf-test"}}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {scope: "100000/min" for scope in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]},  # noqa: F405
}
