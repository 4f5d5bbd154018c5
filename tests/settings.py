"""Test settings: the demo shop's, made fast and self-contained.

``DATABASE_URL`` picks PostgreSQL in CI; tasks run eagerly unless an integration test starts
real workers (see tests/pipeline).
"""

import os

from demo_shop.settings import *  # noqa: F403
from demo_shop.settings import BASE_DIR, DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
# The library default (the demo turns view-triggered refreshes off when it has no broker).
SHOPRECO = {**SHOPRECO, "REFRESH_ON_VIEW": True}  # noqa: F405
CELERY_TASK_EAGER_PROPAGATES = True
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "shopreco-tests",
    }
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file (not :memory:) so that worker processes started by integration tests can open the
    # test database (they get its path from connection.settings_dict["NAME"]); one per test
    # process, so concurrent runs and xdist workers never share one.
    _name = os.environ.get("SHOPRECO_TEST_DB_NAME") or (
        f"test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}.sqlite3"
    )
    (BASE_DIR / "var").mkdir(exist_ok=True)  # git-ignored: absent on a fresh clone
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / _name)}
DATABASES["default"]["CONN_MAX_AGE"] = 0
MEDIA_ROOT = BASE_DIR / "var" / "test-media"
REST_FRAMEWORK = {**REST_FRAMEWORK}  # noqa: F405
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "shopreco_anon": "10000/min",
    "shopreco_user": "10000/min",
    "shopreco_events": "10000/min",
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
