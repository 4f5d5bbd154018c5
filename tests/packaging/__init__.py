"""Packaging: fast checks of the metadata (in the suite) and the install check
(``check_install.py``, run by ``make check-install`` and CI, never by ``make test``)."""
