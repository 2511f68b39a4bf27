"""Settings shared by every environment. Everything that differs between machines comes from the
environment; docs/OPERATIONS.md lists each variable."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

DATA_DIR = Path(env_str("SCENECLF_DATA_DIR", str(BASE_DIR / "var")))
MODEL_ROOT = Path(env_str("MODEL_ROOT", str(DATA_DIR / "models")))
ARTIFACT_ROOT = Path(env_str("ARTIFACT_ROOT", str(DATA_DIR / "artifacts")))
FEATURE_CACHE_DIR = Path(env_str("FEATURE_CACHE_DIR", str(DATA_DIR / "features")))
UPLOAD_DIR = Path(env_str("UPLOAD_DIR", str(DATA_DIR / "uploads")))
DATA_DIR.mkdir(parents=True, exist_ok=True)  # the SQLite files live here on a fresh clone

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from this server: no CDN
    "django_htmx",
    "axes",
    "csp",
    "labeling",
    "modeling",
    "feedback",
]

MIDDLEWARE = [
    "sceneclf_site.metrics.MetricsMiddleware",  # first: times everything below it
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "sceneclf_site.middleware.CookieOrDefaultLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "sceneclf_site.middleware.BrokerUnavailableMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "sceneclf_site.urls"
WSGI_APPLICATION = "sceneclf_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# SQLite is the embedded default; DATABASE_URL (e.g. postgres://...) switches to a server. Each web thread keeps
# its connection for DB_CONN_MAX_AGE seconds (checked before reuse): opening one per request cost a predict
# request about 2 ms on SQLite and more on PostgreSQL. PostgreSQL needs max_connections above web workers x
# WEB_THREADS plus the Celery workers' concurrency.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'sceneclf.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets readers run beside the one writer. IMMEDIATE takes the write lock when a transaction starts,
    # so a writer waits (up to the busy timeout) instead of failing with "database is locked" when it
    # upgrades a read lock that another writer overtook.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env_int("SQLITE_BUSY_TIMEOUT_SECONDS", 30),
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out logins before a password is checked
    "django.contrib.auth.backends.ModelBackend",
]
# Login lockout (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from one IP the
# login answers 429 until the cool-off ends or an admin runs `manage.py axes_reset_username <name>`.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "429_lockout.html"

# Who may create projects: "staff" (staff, superusers and members of PROJECT_CREATORS_GROUP) or "everyone"
# (any signed-in user).
PROJECT_CREATORS = env_str("PROJECT_CREATORS", "staff")
PROJECT_CREATORS_GROUP = env_str("PROJECT_CREATORS_GROUP", "project creators")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "labeling:project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = env_str("DJANGO_LANGUAGE_CODE", "zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 50 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Largest uploaded file (imports); refused with a 413 while it arrives, before it is stored.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 50 * 1024 * 1024)
FILE_UPLOAD_HANDLERS = [
    "sceneclf_site.parsers.CappedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Deepest nesting of arrays/objects accepted in a JSON body or JSONL line.
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 32)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labeling.authentication.ProjectTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "sceneclf_site.parsers.StrictJSONParser",
        "sceneclf_site.parsers.StrictFormParser",
        "sceneclf_site.parsers.StrictMultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "sceneclf_site.api_errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "sceneclf_site.throttling.TokenRateThrottle",
        "sceneclf_site.throttling.TokenIpRateThrottle",
        "sceneclf_site.throttling.PredictRateThrottle",
        "sceneclf_site.throttling.PredictIpRateThrottle",
    ],
    # Requests per period for each scope; sceneclf_site/throttling.py says what each scope counts.
    "DEFAULT_THROTTLE_RATES": {
        "token": env_str("THROTTLE_TOKEN", "600/min"),
        "token_ip": env_str("THROTTLE_TOKEN_IP", "1200/min"),
        "predict": env_str("THROTTLE_PREDICT", "300/min"),
        "predict_ip": env_str("THROTTLE_PREDICT_IP", "600/min"),
        "token_failure": env_str("THROTTLE_TOKEN_FAILURE", "10/min"),
    },
    # The client address DRF throttles by: 0 trusts no X-Forwarded-For (direct clients), N trusts N proxies.
    "NUM_PROXIES": env_int("TRUSTED_PROXY_COUNT", 0) or None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "sceneclf API",
    "DESCRIPTION": "Classify short user feedback into scenes; label, review and train models.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation documents the JSON error envelope for the 4xx/5xx answers it can give.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "sceneclf_site.openapi.document_errors"],
    # Several models have a `status` field with different choices: give each enum its own name.
    "ENUM_NAME_OVERRIDES": {
        "TaxonomyStatusEnum": "labeling.models.TaxonomyVersion.Status",
        "ImportStatusEnum": "labeling.models.ImportJob.Status",
        "TrainingRunStatusEnum": "modeling.models.TrainingRun.Status",
        "ModelVersionStatusEnum": "modeling.models.ModelVersion.Status",
    },
}

# --- Cache: throttle counters shared by every web worker ------------------------------------------
# Redis when REDIS_URL is set; else a table in the database (created by `manage.py createcachetable`).
REDIS_URL = env_str("REDIS_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "sceneclf"}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "sceneclf_cache"}
    )
}

# --- Web server (gunicorn, gthread workers; sceneclf_site/gunicorn_conf.py reads these) -------------------
WEB_WORKERS = env_int("WEB_WORKERS", 2)
# Predict requests of one process share a forward (PREDICT_BATCH_*): threads mostly wait for it, so a batch
# can only be as large as the threads that feed it.
WEB_THREADS = env_int("WEB_THREADS", 16)
WEB_TIMEOUT_SECONDS = env_int("WEB_TIMEOUT_SECONDS", 120)

# --- Content-Security-Policy (django-csp): nothing inline, nothing from other hosts ----------------------
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # Style elements: our files, plus the one rule matplotlib writes into every inline SVG plot (its hash).
        "style-src-elem": ["'self'", "'sha256-2Iqu4MW0P4n79bqVmTDfLWhO8TS7MxwRJn7HVNDr7EQ='"],
        # Style attributes (the SVG plots are drawn with them) cannot run script; scripts stay strict.
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Celery -----------------------------------------------------------------------------------
# REDIS_URL selects a real Redis broker and result store. Without it, the embedded fallback is
# kombu's SQLAlchemy transport on a SQLite file: pure Python, no root, nothing to install.
_EMBEDDED_BROKER_DB = DATA_DIR / "celery-broker.sqlite3"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or f"sqla+sqlite:///{_EMBEDDED_BROKER_DB}")
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND", REDIS_URL or f"db+sqlite:///{DATA_DIR / 'celery-results.sqlite3'}"
)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 3 * 3600)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3 * 3600 + 300)
CELERY_BEAT_INTERVAL_MINUTES = env_int("CELERY_BEAT_INTERVAL_MINUTES", 10)
# Sending a task never blocks a request for long: one connection attempt, at most this many seconds. A broker
# that does not answer leaves the row "waiting for the queue"; beat sends it again.
BROKER_CONNECT_TIMEOUT = env_float("BROKER_CONNECT_TIMEOUT", 1.0)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_CONNECT_TIMEOUT
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):  # the SQLAlchemy transport takes no such options
    CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 0, "socket_connect_timeout": BROKER_CONNECT_TIMEOUT}
CELERY_TASK_PUBLISH_RETRY = False
# Rows (training runs, imports) whose task did not reach the broker are sent again by beat this often.
REQUEUE_EVERY_SECONDS = env_int("REQUEUE_EVERY_SECONDS", 30)

# --- ML engine --------------------------------------------------------------------------------
TORCH_THREADS = env_int("TORCH_THREADS", os.cpu_count() or 1)
DEFAULT_BACKBONE = env_str("DEFAULT_BACKBONE", "multilingual-e5-small")
MAX_TEXT_CHARS = env_int("MAX_TEXT_CHARS", 2000)
# Before a project's first trained version, active learning's cold start and the workspace's suggestions use the
# `zero_shot` route on the taxonomy: "encoder" (prototype similarity, ~15 ms a text) scores a whole pool in
# minutes; "combined" adds the decoder (~1 s a text on 2 cores). docs/ACTIVE_LEARNING.md, "Zero-shot cold start".
ZERO_SHOT_METHOD = env_str("ZERO_SHOT_METHOD", "encoder")
ZERO_SHOT_DECODER = env_str("ZERO_SHOT_DECODER", "qwen2.5-coder-0.5b-instruct")
# Off: the first batch is k-means clusters of the pool (better when label names alone do not separate the labels);
# the zero-shot suggestions are shown either way.
ZERO_SHOT_COLD_START = env_bool("ZERO_SHOT_COLD_START", True)
PREDICT_MAX_TEXTS = env_int("PREDICT_MAX_TEXTS", 256)
PREDICT_MAX_CHARS = env_int("PREDICT_MAX_CHARS", 2000)
FEEDBACK_MAX_ITEMS = env_int("FEEDBACK_MAX_ITEMS", 500)
# One torch thread per predict request: on small machines a second thread slows one text down; scale with
# more web workers instead.
PREDICT_TORCH_THREADS = env_int("PREDICT_TORCH_THREADS", 1)
# Shadow scoring runs after the answer, on one background thread per process; at most SHADOW_MAX_PENDING
# requests wait for it, and a request that finds the queue full is scored by the shadow in line (nothing lost).
SHADOW_MAX_PENDING = env_int("SHADOW_MAX_PENDING", 64)
# A running run writes a heartbeat every TRAINING_HEARTBEAT_SECONDS from a thread of its worker; one whose
# heartbeat is older than TRAINING_STALE_AFTER_SECONDS is failed (its worker died), so the project can train again.
TRAINING_HEARTBEAT_SECONDS = env_float("TRAINING_HEARTBEAT_SECONDS", 10.0)
TRAINING_STALE_AFTER_SECONDS = env_int("TRAINING_STALE_AFTER_SECONDS", 45)

# --- Monitoring (docs/OPERATIONS.md, "Monitoring") ----------------------------------------------------
# Drift: every DRIFT_CHECK_MINUTES, the last DRIFT_WINDOW_HOURS of each project's traffic (at most
# DRIFT_MAX_SAMPLES predictions, and at least DRIFT_MIN_WINDOW) against the served version's training snapshot.
DRIFT_CHECK_MINUTES = env_int("DRIFT_CHECK_MINUTES", 60)
DRIFT_WINDOW_HOURS = env_float("DRIFT_WINDOW_HOURS", 24.0)
DRIFT_MAX_SAMPLES = env_int("DRIFT_MAX_SAMPLES", 500)
DRIFT_MIN_WINDOW = env_int("DRIFT_MIN_WINDOW", 50)
# The release rule (docs/OPERATIONS.md, "Champion, challenger, shadow") runs every RELEASE_CHECK_MINUTES and
# after each feedback request.
RELEASE_CHECK_MINUTES = env_int("RELEASE_CHECK_MINUTES", 10)
ALERT_WEBHOOK_TIMEOUT_SECONDS = env_float("ALERT_WEBHOOK_TIMEOUT_SECONDS", 5.0)
# GET /metrics (Prometheus): allowed from these client addresses, or with `Authorization: Bearer <token>`.
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
METRICS_BEARER_TOKEN = env_str("METRICS_BEARER_TOKEN", "")

# --- The predict path (docs/OPERATIONS.md, "Serving fast path") ---------------------------------------
# A valid API token is reused by a process for this long, unless anything about it changes (then at once).
API_TOKEN_CACHE_SECONDS = env_float("API_TOKEN_CACHE_SECONDS", 30.0)
API_TOKEN_LAST_USED_SECONDS = env_float("API_TOKEN_LAST_USED_SECONDS", 60.0)
# Which version is served is re-read when it changes (publish, rollback, a new taxonomy) and at least this often.
SERVING_RECHECK_SECONDS = env_float("SERVING_RECHECK_SECONDS", 30.0)
# The prediction log is written by a thread of each web process, every PREDICTION_LOG_FLUSH_MS or every
# PREDICTION_LOG_BATCH_ROWS rows; rows wait in a spool file until they are in the database (nothing is lost if
# the process dies). 0 writes each request's rows inline.
PREDICTION_LOG_FLUSH_MS = env_int("PREDICTION_LOG_FLUSH_MS", 100)
PREDICTION_LOG_BATCH_ROWS = env_int("PREDICTION_LOG_BATCH_ROWS", 500)
PREDICTION_LOG_BUFFER_ROWS = env_int("PREDICTION_LOG_BUFFER_ROWS", 20000)
PREDICTION_LOG_SPOOL_DIR = Path(env_str("PREDICTION_LOG_SPOOL_DIR", str(DATA_DIR / "prediction-spool")))
# Concurrent predict requests of one process share one forward: a request that finds the model busy waits for
# it, then runs with every request that queued meanwhile (at most PREDICT_BATCH_MAX_TEXTS texts), after
# gathering for up to PREDICT_BATCH_DELAY_MS more. A request alone never waits. 0 texts turns batching off.
PREDICT_BATCH_MAX_TEXTS = env_int("PREDICT_BATCH_MAX_TEXTS", 64)
PREDICT_BATCH_DELAY_MS = env_float("PREDICT_BATCH_DELAY_MS", 2.0)
# Feature vectors of the last texts a process served, per backbone setup: a shadow or challenger on the same
# backbone reuses the champion's instead of running the encoder again. 0 turns the reuse off.
SERVING_RECENT_FEATURES = env_int("SERVING_RECENT_FEATURES", 4096)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # No feedback text or personal data in any line: exception messages withheld, PII masked.
    "filters": {"redact": {"()": "sceneclf_site.log_filters.RedactUserText"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
