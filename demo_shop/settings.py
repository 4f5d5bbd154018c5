"""Settings for the demo shop. Everything has an embedded default (SQLite, no broker), so
``make demo`` works on a fresh machine; ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to
PostgreSQL and a real broker."""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key-change-me")
# Off unless asked for (DJANGO_DEBUG=1; `make demo` asks): Django's debug error pages list the
# settings and the process environment, DATABASE_URL with its password included.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # ReDoc assets for the API docs page, served without a CDN
    "shopreco",
    "demo_shop.catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "shopreco.middleware.ShopRecoMiddleware",
    # A database outage answers a short 503 rather than a 500 page.
    "shopreco.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "demo_shop.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "demo_shop" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "demo_shop.catalog.context_processors.shop",
            ],
        },
    },
]

WSGI_APPLICATION = "demo_shop.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Let the demo's in-process recompute and the web server share the file without
    # "database is locked" errors: readers do not wait for a writer in WAL mode, and writers
    # take the lock when their transaction starts rather than failing halfway. A commit
    # then waits for the disk only at checkpoints (synchronous=NORMAL, safe with WAL): a
    # served list's impression row does not hold the worker up.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "demo_shop" / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "var" / "media"

LOGIN_URL = "catalog:login"
LOGIN_REDIRECT_URL = "catalog:home"
LOGOUT_REDIRECT_URL = "catalog:home"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "shopreco-demo",
    }
}
if os.environ.get("CACHE_URL", "").startswith("redis://"):
    CACHES["default"] = {
        # Django's RedisCache with one Redis client per process (demo_shop/cache.py).
        "BACKEND": "demo_shop.cache.ReusedClientRedisCache",
        "LOCATION": os.environ["CACHE_URL"],
        # A cache host that drops packets must not hold a page up: shopreco treats a failed
        # cache call as a miss, but only once the call gives up.
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }

# --- shopreco -------------------------------------------------------------------------------
SHOPRECO_PRODUCT_MODEL = "catalog.Product"
SHOPRECO = {
    "VIEW_TRACKING": "middleware",
    # Without a broker Celery runs eagerly: a view must not refresh the list inside the page.
    "REFRESH_ON_VIEW": bool(os.environ.get("CELERY_BROKER_URL")),
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or None
# No broker: run tasks in-process so the demo works with nothing else installed.
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "shopreco-nightly-full-recompute": {
        "task": "shopreco.tasks.full_recompute",
        "schedule": crontab(hour=3, minute=0),
    },
    "shopreco-drain-refresh-outbox": {
        "task": "shopreco.tasks.drain_pending_refreshes",
        "schedule": 60.0,
    },
    "shopreco-refresh-rankings": {  # CACHE_TIMEOUT / 2: no request waits for a ranking
        "task": "shopreco.tasks.refresh_rankings",
        "schedule": 150.0,
    },
    "shopreco-purge-old-events": {
        "task": "shopreco.tasks.purge_old_events",
        "schedule": crontab(hour=4, minute=30),
    },
    "shopreco-housekeeping": {  # also runs after every full recompute; this is a safety net
        "task": "shopreco.tasks.housekeeping",
        "schedule": crontab(hour=5, minute=0),
    },
}

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "shopreco_anon": "600/min",
        "shopreco_user": "1200/min",
        "shopreco_events": "300/min",
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "shopreco API",
    "DESCRIPTION": "Product recommendations for headless shops and mobile apps.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Django prints request errors to the console only with DEBUG on (and mails them to ADMINS,
# which the demo has none of): with DEBUG off a 500 was logged nowhere. "errors" prints them,
# with the traceback, when DEBUG is off; Django's own console handler does when it is on.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"require_debug_false": {"()": "django.utils.log.RequireDebugFalse"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "errors": {
            "class": "logging.StreamHandler",
            "level": "ERROR",
            "filters": ["require_debug_false"],
        },
    },
    "loggers": {
        "shopreco": {"handlers": ["console"], "level": "INFO"},
        "django.request": {"handlers": ["errors"]},  # 500s
        "django.security": {"handlers": ["errors"]},  # SuspiciousOperation, DisallowedHost
    },
}
