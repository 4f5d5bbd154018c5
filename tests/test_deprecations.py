"""Public names on their way out keep working for now, but say what to use instead."""

from __future__ import annotations

import pytest
from django.conf import settings

from shopreco.adapter import DefaultAdapter
from shopreco.conf import reco_settings


def test_product_model_setting_warns_and_still_answers():
    with pytest.warns(DeprecationWarning, match="settings.SHOPRECO_PRODUCT_MODEL"):
        value = reco_settings.PRODUCT_MODEL
    assert value == settings.SHOPRECO_PRODUCT_MODEL


@pytest.mark.django_db
def test_adapter_is_available_warns_and_still_answers(product_factory):
    adapter = DefaultAdapter()
    shown, hidden = product_factory(), product_factory(in_stock=False)
    with pytest.warns(DeprecationWarning, match=r"available\(queryset\)"):
        assert adapter.is_available(shown) is True
    with pytest.warns(DeprecationWarning):
        assert adapter.is_available(hidden) is False
