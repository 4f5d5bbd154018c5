"""Test settings with the demo catalogue swapped for tests.keytypes.textpk (see settings_common)."""

from tests.keytypes.settings_common import swap_product_app
from tests.settings import *  # noqa: F403

swap_product_app(globals(), "textpk")
