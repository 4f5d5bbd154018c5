"""``PersonalizedOrdering``: a DRF filter backend that puts a host's own product listing in
the shopper's order when the client asks for it (``?rank=personal``).

A host adds it to its own product ViewSet, after DRF's ``OrderingFilter`` and any search
or filter backend (it must be the last: it hands on an ordered sequence, not a QuerySet)::

    filter_backends = [SearchFilter, OrderingFilter, PersonalizedOrdering]

Without the parameter the QuerySet passes untouched. A value other than ``personal`` is a
400 naming the parameter (a client that asked for a personal order and silently got
another would not know). Page-number and limit/offset pagination work on the result;
cursor pagination needs a QuerySet and does not.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError
from rest_framework.exceptions import ValidationError
from rest_framework.filters import BaseFilterBackend

from shopreco.serving import ranking
from shopreco.serving.request import memo

logger = logging.getLogger("shopreco.api")

_MEMO_KEY = "ranked_listing"


class PersonalizedOrdering(BaseFilterBackend):
    """Reorder the listing for the shopper with :func:`shopreco.rank` on ``?rank=personal``.

    Subclass to change ``rank_param``, ``blend`` (0: the host's order, 1: purely personal)
    or ``limit`` (None: ``RANK_LIMIT``)."""

    rank_param = "rank"
    rank_value = "personal"
    blend: float = 0.5
    limit: int | None = None

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        value = request.query_params.get(self.rank_param, "").strip()
        if not value:
            return queryset
        if value != self.rank_value:
            raise ValidationError({self.rank_param: [
                f"Must be {self.rank_value!r} (or absent for the listing's own order)."]})
        try:
            ranked = ranking.rank(queryset, request, limit=self.limit, blend=self.blend)
        except DatabaseError:
            # a ranking failure must not take the host's listing down with it
            logger.exception("shopreco PersonalizedOrdering: database error, host order kept")
            return queryset
        memo(request)[_MEMO_KEY] = ranked
        return ranked

    @staticmethod
    def recommendation_id(request: Any) -> str:
        """The recommendation id of the listing ranked on this request ("" if none), for a
        host view to return (a header or a field) so that the client's events carry it."""
        ranked = memo(request).get(_MEMO_KEY)
        return ranked.recommendation_id if ranked is not None else ""

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [{
            "name": self.rank_param,
            "required": False,
            "in": "query",
            "description": (
                f"{self.rank_value!r}: the listing in the shopper's order (their history "
                "blended with the listing's own order; unchanged for shoppers without "
                "history or who opted out). Absent: the listing's own order."),
            "schema": {"type": "string", "enum": [self.rank_value]},
        }]
