"""Fixtures of the fault tests."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(autouse=True)
def _own_snapshot_prefix(settings):
    """Run files under a prefix of this session: run ids restart with every test database,
    and other test sessions share the media folder (and prune their own run-<id> files)."""
    settings.SHOPRECO = {**(getattr(settings, "SHOPRECO", None) or {}),
                         "SNAPSHOT_PREFIX": f"test-{uuid.uuid4().hex}"}
