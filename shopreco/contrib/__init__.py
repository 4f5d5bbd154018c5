"""Optional integrations with other Django apps (the top floor: they import shopreco, the core
never imports them). Each is an app of its own, added to ``INSTALLED_APPS`` by the hosts that
use the framework it integrates."""
