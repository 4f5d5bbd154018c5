"""The sentence under each recommended product, from its :class:`~shopreco.models.Reason`."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from shopreco.adapter import get_adapter
from shopreco.models import Reason


def _category_name(product: Any) -> str:
    category = get_adapter().get_category(product) if product is not None else None
    return str(category) if category not in (None, "") else ""


_BECAUSE = {
    Reason.RATED: lambda name: _("Because you rated %(name)s") % {"name": name},
    Reason.BOUGHT: lambda name: _("Because you bought %(name)s") % {"name": name},
    Reason.CARTED: lambda name: _("Because you added %(name)s to your cart") % {"name": name},
    Reason.VIEWED: lambda name: _("Because you viewed %(name)s") % {"name": name},
    Reason.ALSO_BOUGHT: lambda name: (
        _("Customers who bought %(name)s also bought this") % {"name": name}),
    Reason.SIMILAR: lambda name: _("Shoppers who liked %(name)s also liked this") % {"name": name},
}


def reason_text(code: str, product: Any, reason_product: Any = None) -> str:
    """The sentence shown under a recommended product (plain text; templates escape it)."""
    name = get_adapter().get_name(reason_product) if reason_product is not None else ""
    if name and code in _BECAUSE:
        return _BECAUSE[Reason(code)](name)
    category = _category_name(product)
    if code == Reason.TRENDING:
        if category:
            return _("Popular in %(category)s this week") % {"category": category}
        return _("Popular this week")
    if code == Reason.NEW:
        return _("New in %(category)s") % {"category": category} if category else _("New arrival")
    if code == Reason.CATALOGUE:
        return _("From our %(category)s range") % {"category": category} if category else _(
            "From our range"
        )
    if code in (*Reason.activity(), Reason.SIMILAR):
        return _("Picked for you")
    if category:
        return _("Popular in %(category)s") % {"category": category}
    return _("A customer favourite")


def reason_kind(code: str) -> str:
    """The code the API and templates report (see :attr:`Reason.kind`)."""
    try:
        return Reason(code).kind
    except ValueError:
        return code
