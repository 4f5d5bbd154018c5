"""Settings for the Celery worker processes that tests/pipeline/test_integration.py starts.

The test settings, pointed at the test database the pytest process created (its name comes
from the environment: a SQLite file under var/, or test_<name> on PostgreSQL), a real broker
and a result backend (chords need one), and tasks not eager.
"""

import json
import os
import time

from celery.signals import task_prerun

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = os.environ["SHOPRECO_TEST_BROKER"]
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
if os.environ.get("SHOPRECO_TEST_QUEUE"):
    # The test's own queue, so concurrent test sessions on one Redis db do not mix.
    CELERY_TASK_DEFAULT_QUEUE = os.environ["SHOPRECO_TEST_QUEUE"]
DATABASES["default"]["NAME"] = os.environ["SHOPRECO_TEST_DB_NAME"]
SHOPRECO = {**globals().get("SHOPRECO", {}),  # noqa: F405
            **json.loads(os.environ.get("SHOPRECO_TEST_OVERRIDES", "{}"))}

# Test hook: make stage tasks slow so a test can act while a run is in progress.
_DELAY = float(os.environ.get("SHOPRECO_TEST_TASK_DELAY", "0") or 0)


@task_prerun.connect(weak=False)
def _slow_down(sender=None, **kwargs):
    if _DELAY and sender is not None and sender.name in (
        "shopreco.tasks.similarity_block",
        "shopreco.tasks.recommend_batch",
    ):
        time.sleep(_DELAY)
