"""What serving returns (``RecoList`` of ``RecoItem``) and what it caches (``Candidate``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecoItem:
    """One recommended product with the reason shown to the shopper.

    ``score`` is the item's relevance within its list, in [0, 1] (see
    :func:`shopreco.serving.lists.relevance`); ``raw_score`` is the model's own score, on a
    scale that differs per source and algorithm (not shown to shoppers or API clients).
    ``source`` says where this item came from: the list's own candidates ("similar",
    "also_bought", "personal", "recent") or the popular padding ("popular")."""

    product: Any
    score: float
    reason: str
    reason_kind: str
    reason_product: Any = None
    source: str = "popular"
    raw_score: float = 0.0

    @property
    def pk(self) -> Any:
        return self.product.pk


@dataclass
class RecoList:
    """One served list; ``recommendation_id`` travels with clicks, carts and purchases.
    ``source``: the source of its first item, "none" for an empty list."""

    widget: str
    recommendation_id: str
    items: list[RecoItem] = field(default_factory=list)
    source: str = "popular"

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def products(self) -> list[Any]:
        return [item.product for item in self.items]


@dataclass
class Candidate:
    """A cacheable candidate: primary keys and codes only, objects are loaded separately."""

    pk: Any
    score: float
    code: str
    reason_pk: Any = None
    source: str = "popular"
