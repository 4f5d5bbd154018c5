"""The registry of list kinds ("widgets"): one record per kind says how its candidates are
found, whether it is about a product, whether it is cached per viewer, and which template
renders it. Serving, the template tags and the API read it, so a new kind is one record
(see docs/EXTENDING.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shopreco.models import ItemSimilarity
from shopreco.serving.candidates import (
    personal_candidates,
    product_candidates,
    recent_candidates,
)
from shopreco.serving.plan import Plan
from shopreco.serving.types import Candidate


@dataclass(frozen=True)
class ListKind:
    """One kind of list.

    ``candidates(plan, objs)`` returns the list's own candidates, best first (the popular fill
    follows when they are too few); it may put loaded products into ``objs``. A kind with
    ``needs_product`` is about one product (the page's); one with ``per_viewer`` caches its
    candidates per viewer and run (product kinds are built from shared per-run neighbour
    lists and re-checked on every request anyway, so a per-viewer copy would save nothing).
    A kind with ``padded`` False is never filled up with popular products: with too few
    candidates of its own it is short, or empty (its widget then renders nothing), because
    padding would claim something untrue (also-bought: nobody bought those together).
    """

    name: str
    candidates: Callable[[Plan, dict], list[Candidate]]
    template: str
    needs_product: bool = False
    per_viewer: bool = True
    padded: bool = True


def _neighbours_of(kind: str, *, fill: bool = True) -> Callable[[Plan, dict], list[Candidate]]:
    def step(plan: Plan, objs: dict) -> list[Candidate]:
        return product_candidates(plan.product, kind, plan.run_id, plan.viewer, plan.n,
                                  plan.category, plan.skip, objs,
                                  need=plan.limit + len(plan.shown - plan.skip), fill=fill)
    return step


def _for_you(plan: Plan, objs: dict) -> list[Candidate]:
    """The personal list, then neighbours of recent activity while it is too short."""
    need = plan.limit + len(plan.shown - plan.skip)
    cands = [c for c in personal_candidates(plan.viewer, plan.run_id, plan.n, plan.category,
                                            objs) if c.pk not in plan.skip]
    if len(cands) < need:
        have = plan.skip | {c.pk for c in cands}
        cands += [c for c in recent_candidates(plan.viewer, plan.run_id, plan.n, plan.category)
                  if c.pk not in have]
    return cands


def _nothing(plan: Plan, objs: dict) -> list[Candidate]:
    return []


LIST_KINDS: dict[str, ListKind] = {}


def register(kind: ListKind) -> ListKind:
    """Add (or replace) a list kind."""
    LIST_KINDS[kind.name] = kind
    return kind


def get(name: str) -> ListKind:
    try:
        return LIST_KINDS[name]
    except KeyError:
        raise ValueError(f"widget: one of {', '.join(LIST_KINDS)}.") from None


register(ListKind("similar", _neighbours_of(ItemSimilarity.Kind.SIMILAR),
                  "shopreco/widgets/similar.html", needs_product=True, per_viewer=False))
register(ListKind("for-you", _for_you, "shopreco/widgets/for_you.html"))
register(ListKind("popular", _nothing, "shopreco/widgets/popular.html"))
register(ListKind("also-bought", _neighbours_of(ItemSimilarity.Kind.ALSO_BOUGHT, fill=False),
                  "shopreco/widgets/also_bought.html", needs_product=True, per_viewer=False,
                  padded=False))

