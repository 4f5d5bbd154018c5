"""A django-oscar shop with shopreco, as docs/OSCAR.md sets one up: Oscar's documented
settings plus the app before Oscar's and the product model; nothing else of shopreco's.

Run by tests/test_oscar.py in its own pytest process (the product model is fixed when Django
starts). The test database gets its own name per xdist worker, on SQLite or PostgreSQL, so
the subprocess never touches the database of the run that started it.
"""

import os

from oscar import INSTALLED_APPS as OSCAR_APPS
from oscar.defaults import *  # noqa: F403

from tests.settings import *  # noqa: F403
from tests.settings import BASE_DIR, DATABASES

INSTALLED_APPS = [
    *OSCAR_APPS[:OSCAR_APPS.index("oscar.config.Shop")],
    "rest_framework",
    "drf_spectacular",
    "shopreco.contrib.oscar",  # before Oscar: its templates extend Oscar's
    "shopreco",
    *OSCAR_APPS[OSCAR_APPS.index("oscar.config.Shop"):],
    "sorl.thumbnail",
]
SITE_ID = 1
SHOPRECO_PRODUCT_MODEL = "catalogue.Product"
SHOPRECO = {"REFRESH_ON_VIEW": True}  # the library's defaults: no ADAPTER needed

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "oscar.apps.basket.middleware.BasketMiddleware",
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
]
ROOT_URLCONF = "tests.oscar.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.i18n",
                "django.contrib.messages.context_processors.messages",
                "oscar.apps.search.context_processors.search_form",
                "oscar.apps.checkout.context_processors.checkout",
                "oscar.apps.communication.notifications.context_processors.notifications",
                "oscar.core.context_processors.metadata",
            ],
        },
    },
]
AUTHENTICATION_BACKENDS = (
    "oscar.apps.customer.auth_backends.EmailBackend",
    "django.contrib.auth.backends.ModelBackend",
)
HAYSTACK_CONNECTIONS = {"default": {"ENGINE": "haystack.backends.simple_backend.SimpleEngine"}}
STATICFILES_DIRS = []
MEDIA_ROOT = BASE_DIR / "var" / "test-media-oscar"

_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
_database = dict(DATABASES["default"])
if _database["ENGINE"].endswith("sqlite3"):
    _name = str(BASE_DIR / "var" / f"test-oscar-{_worker}-{os.getpid()}.sqlite3")
else:
    _name = f"test_{_database['NAME']}_oscar_{_worker}"
_database["TEST"] = {**_database.get("TEST", {}), "NAME": _name}
DATABASES = {**DATABASES, "default": _database}
