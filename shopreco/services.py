"""The serving layer: the only place that reads recommendation results for display.

Template tags, the REST API and admin previews all call these functions, so every path applies
the same business rules (Gorse once leaked hidden items because one serving path skipped a
filter): adapter availability, owned products excluded, optional category and exclude list,
no product twice on one page, and a cold-start chain that never leaves a widget empty while the
catalogue has available products.

Query budget per widget (checked by tests): one request-level "state" query (active run id and
the user's preference, memoised on the request), one query for the list (products joined in),
one INSERT for the impression. Similar and also-bought lists start from the product's stored
neighbours, cached by run id and shared by every shopper (a run's results never change, so a
new run simply has new keys). A run puts them into a shared cache as it goes live; where it
could not, the first list of a product after a run costs one query more to read them. The
neighbour list and the popularity rankings come in one cache round trip, then one query loads
the first candidates that pass every filter. Personal and popular lists are
cached per viewer, keyed by the active run id and a per-viewer version token that changes
whenever the viewer acts; a cache hit costs one query to re-check availability of the cached
products instead of the list query.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import connections, router
from django.db.models import (
    Case,
    Count,
    DateField,
    Exists,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import TruncDate
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from shopreco.adapter import DefaultAdapter, get_adapter
from shopreco.conf import get_product_model, reco_settings
from shopreco.models import (
    Impression,
    Interaction,
    ItemSimilarity,
    Preference,
    Rating,
    Recommendation,
    RecomputeRun,
    new_recommendation_id,
)

logger = logging.getLogger("shopreco.services")

WIDGETS = ("similar", "for-you", "popular", "also-bought")
_PRODUCT_WIDGETS = ("similar", "also-bought")
REASON_KINDS = (
    "rated", "bought", "carted", "viewed", "also_bought", "similar", "popular", "trending",
)
# Event kind -> reason code used when a recent event explains a recommendation.
EVENT_REASON = {"purchase": "bought", "cart": "carted", "view": "viewed", "rating": "rated"}
# Weight of a rating in popularity (events use SHOPRECO["EVENT_WEIGHTS"]).
RATING_POPULARITY_WEIGHT = 2.0
# Entries kept in a cached popularity ranking.
POPULAR_RANKING_SIZE = 200
# A run's neighbour lists never change; kept a day (a new run has new keys).
NEIGHBOURS_CACHE_TIMEOUT = 24 * 3600
# Seconds one request may hold the rebuild of a popularity ranking (others wait or serve stale).
RANKING_LOCK_TIMEOUT = 10
# Categories whose rankings refresh_rankings keeps fresh (the first ones requests built).
RANKINGS_KNOWN_MAX = 200
_RANKINGS_KNOWN_KEY = "shopreco:pop-known"  # no category key looks like it
SESSION_ATTRIBUTION_KEY = "shopreco_rec"
SESSION_ATTRIBUTION_MAX = 50
_REC_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MEMO_ATTR = "_shopreco_memo"


# --- public data types ----------------------------------------------------------------------


@dataclass
class RecoItem:
    """One recommended product with the reason shown to the shopper."""

    product: Any
    score: float
    reason: str
    reason_kind: str
    reason_product: Any = None

    @property
    def pk(self) -> Any:
        return self.product.pk


@dataclass
class RecoList:
    """One served list; ``recommendation_id`` travels with clicks, carts and purchases."""

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
class _Cand:
    """A cacheable candidate: primary keys and codes only, objects are loaded separately."""

    pk: Any
    score: float
    code: str
    reason_pk: Any = None
    source: str = "popular"


# --- small helpers --------------------------------------------------------------------------


def clean_limit(limit: Any) -> int:
    """Validate a list length from a tag argument or query string; ``None`` means the default."""
    if limit is None or limit == "":
        return int(reco_settings.DEFAULT_LIMIT)
    high = int(reco_settings.MAX_LIMIT)
    if isinstance(limit, bool):
        raise ValueError(f"limit: must be an integer between 1 and {high}.")
    try:
        value = int(str(limit).strip()) if not isinstance(limit, int) else limit
    except (TypeError, ValueError):
        raise ValueError(f"limit: must be an integer between 1 and {high}.") from None
    if not 1 <= value <= high:
        raise ValueError(f"limit: must be an integer between 1 and {high}, not {value}.")
    return value


def _cache():
    return caches[reco_settings.CACHE_ALIAS]


def _json_pk(pk: Any) -> Any:
    return pk if isinstance(pk, int | str) else str(pk)


def _to_pk(value: Any) -> Any:
    """A product, or a primary key in any form, as the model's native pk value."""
    model = get_product_model()
    if isinstance(value, Model):
        return value.pk
    return model._meta.pk.to_python(value)


def _category_pk(category: Any) -> Any:
    return category.pk if isinstance(category, Model) else category


def _base_request(request: Any) -> Any:
    """The Django HttpRequest behind a DRF Request (memo lives there)."""
    return getattr(request, "_request", request)


def _memo(request: Any) -> dict:
    if request is None:
        return {}
    base = _base_request(request)
    memo = getattr(base, _MEMO_ATTR, None)
    if memo is None:
        memo = {"shown": set()}
        try:
            setattr(base, _MEMO_ATTR, memo)
        except AttributeError:  # pragma: no cover - exotic request objects
            pass
    return memo


def _is_user(obj: Any) -> bool:
    return obj is not None and getattr(obj, "is_authenticated", False) and obj.pk is not None


def _session_key(request: Any, create: bool = False) -> str:
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return ""
    if not session.session_key and create:
        session.save()
    return session.session_key or ""


class _Viewer:
    """Who the list is for: a user, an anonymous session, or nobody in particular."""

    def __init__(self, user: Any = None, session_key: str = "") -> None:
        self.user = user if _is_user(user) else None
        self.session_key = "" if self.user else (session_key or "")

    @property
    def key(self) -> str:
        if self.user is not None:
            return f"u:{self.user.pk}"
        if self.session_key:
            return f"s:{self.session_key}"
        return "anon"

    @property
    def identified(self) -> bool:
        return self.user is not None or bool(self.session_key)

    def events(self) -> QuerySet:
        if self.user is not None:
            return Interaction.objects.filter(user=self.user)
        if self.session_key:
            return Interaction.objects.filter(user__isnull=True, session_key=self.session_key)
        return Interaction.objects.none()


def _viewer_from(user: Any, request: Any) -> _Viewer:
    if isinstance(user, str):
        return _Viewer(None, user)
    if user is None and request is not None:
        user = getattr(request, "user", None)
    if _is_user(user):
        return _Viewer(user)
    return _Viewer(None, _session_key(request))


# --- per-viewer cache versions --------------------------------------------------------------


def _key_part(value: Any) -> str:
    """A value as part of a cache key that every backend accepts: as it is when it is a
    short ASCII token without ``:`` (integer and UUID keys), else hashed. Text keys may
    hold spaces or non-ASCII characters, which memcached refuses, or a ``:`` that could make
    one key look like another's lock ("x:lock")."""
    text = str(value)
    if _SAFE_KEY_PART.fullmatch(text):
        return text
    return "h" + hashlib.sha1(text.encode()).hexdigest()


_SAFE_KEY_PART = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _version_key(viewer_key: str) -> str:
    return f"shopreco:v:{_key_part(viewer_key)}"


def _version(viewer_key: str) -> str:
    """A random token per viewer; replacing it orphans every cached list of that viewer (a token
    rather than a counter, so an evicted key can never bring an old version back)."""
    if viewer_key.startswith("anon"):
        return "0"
    cache = _cache()
    token = cache.get(_version_key(viewer_key))
    if token is None:
        token = uuid.uuid4().hex[:12]
        cache.add(_version_key(viewer_key), token, timeout=None)
        token = cache.get(_version_key(viewer_key)) or token
    return token


def invalidate_user(user_or_key: Any) -> None:
    """Drop every cached list of a user (instance or pk) or an anonymous session key.

    Called on each rating, event and preference change; the pipeline and privacy code call it
    after rewriting a user's data."""
    if isinstance(user_or_key, str) and not user_or_key.isdigit():
        key = f"s:{user_or_key}"
    else:
        pk = getattr(user_or_key, "pk", user_or_key)
        key = f"u:{pk}"
    _cache().set(_version_key(key), uuid.uuid4().hex[:12], timeout=None)
    _cache().set(_version_key(key + ":views"), uuid.uuid4().hex[:12], timeout=None)


def _invalidate_viewer(user_id: Any, session_key: str = "") -> None:
    if user_id is not None:
        _cache().set(_version_key(f"u:{user_id}"), uuid.uuid4().hex[:12], timeout=None)
    elif session_key:
        _cache().set(_version_key(f"s:{session_key}"), uuid.uuid4().hex[:12], timeout=None)


@receiver(post_save, sender=Rating, dispatch_uid="shopreco.services.rating_saved")
@receiver(post_delete, sender=Rating, dispatch_uid="shopreco.services.rating_deleted")
def _rating_changed(sender: Any, instance: Rating, **kwargs: Any) -> None:
    _invalidate_viewer(instance.user_id)


@receiver(post_save, sender=Interaction, dispatch_uid="shopreco.services.event_saved")
def _event_saved(sender: Any, instance: Interaction, **kwargs: Any) -> None:
    # A view only changes the "recent activity" step of the for-you list, so it renews just
    # that token: similar/also-bought lists of a browsing shopper stay cached.
    if instance.kind == "view":
        key = f"u:{instance.user_id}" if instance.user_id is not None else (
            f"s:{instance.session_key}" if instance.session_key else "")
        if key:
            _cache().set(_version_key(key + ":views"), uuid.uuid4().hex[:12], timeout=None)
        return
    _invalidate_viewer(instance.user_id, instance.session_key)


@receiver(post_save, sender=Preference, dispatch_uid="shopreco.services.preference_saved")
def _preference_saved(sender: Any, instance: Preference, **kwargs: Any) -> None:
    _invalidate_viewer(instance.user_id)


# --- request state: active run and preference in one query ----------------------------------


def _state_sql(connection: Any) -> str:
    """The state query: active run id and the user's preference, hand-written because the ORM
    spends longer compiling it (two correlated subqueries) than the database runs it.
    Identifiers come from model metadata; values are bound parameters."""
    qn = connection.ops.quote_name
    run_table = qn(RecomputeRun._meta.db_table)
    run_id = qn(RecomputeRun._meta.pk.column)
    run_kind = qn(RecomputeRun._meta.get_field("kind").column)
    run_status = qn(RecomputeRun._meta.get_field("status").column)
    run_finished = qn(RecomputeRun._meta.get_field("finished_at").column)
    pref_table = qn(Preference._meta.db_table)
    pref_value = qn(Preference._meta.get_field("personalize").column)
    pref_user = qn(Preference._meta.get_field("user").column)
    return (
        f"SELECT (SELECT {run_id} FROM {run_table} WHERE {run_kind} = %s AND {run_status} = %s"
        f" ORDER BY {run_finished} DESC, {run_id} DESC LIMIT 1),"
        f" (SELECT {pref_value} FROM {pref_table} WHERE {pref_user} = %s LIMIT 1)"
    )


def _state(user: Any, request: Any) -> tuple[int | None, bool]:
    """(active run id, personalize preference), read with ONE query and memoised per request.

    No cache: a newly activated run or a changed preference takes effect on the next request.
    The run is the latest succeeded full run (RecomputeRun.latest_succeeded()'s order)."""
    memo = _memo(request)
    user_pk = user.pk if _is_user(user) else None
    cached = memo.get(("state", user_pk))
    if cached is not None:
        return cached
    connection = connections[router.db_for_read(RecomputeRun)]
    with connection.cursor() as cursor:
        cursor.execute(_state_sql(connection), [
            RecomputeRun.Kind.FULL.value, RecomputeRun.Status.SUCCEEDED.value, user_pk,
        ])
        run_id, pers = cursor.fetchone()
    state = (run_id, pers is None or bool(pers))
    if request is not None:
        memo[("state", user_pk)] = state
    return state


def active_run_id(request: Any = None) -> int | None:
    """Id of the run being served (the latest succeeded full run), memoised per request."""
    return _state(None, request)[0]


def _gpc(request: Any) -> bool:
    if request is None or not reco_settings.HONOR_GPC:
        return False
    headers = getattr(request, "headers", None)
    return bool(headers) and headers.get("Sec-GPC", "").strip() == "1"


def personalization_allowed(user: Any, request: Any = None) -> bool:
    """False when the user opted out (Preference.personalize) or the browser sends Sec-GPC: 1
    and HONOR_GPC is on: such visitors get popular lists only and nothing is tracked."""
    if _gpc(request):
        return False
    if user is None and request is not None:
        user = getattr(request, "user", None)
    if not _is_user(user):
        return True
    return _state(user, request)[1]


# --- candidate steps ------------------------------------------------------------------------


def _available_pks() -> QuerySet:
    return get_adapter().available().values("pk")


def _category_filter(prefix: str, category: Any) -> dict[str, Any]:
    if category is None:
        return {}
    cf = get_adapter().category_field()
    if cf is None:
        raise ValueError("category: the product model has no category field (see the adapter).")
    return {f"{prefix}{cf}": _category_pk(category)}


def _owned_exclusions(qs: QuerySet, path: str, viewer: _Viewer) -> QuerySet:
    """Exclude, in SQL, products the viewer already rated or bought (EXCLUDE_OWNED)."""
    if not reco_settings.EXCLUDE_OWNED or not viewer.identified:
        return qs
    subs = getattr(viewer, "_owned_subqueries", None)
    if subs is None:  # built once per viewer: the same subqueries serve every query
        owned_kinds = list(reco_settings.OWNED_EVENT_KINDS)
        subs = [viewer.events().filter(kind__in=owned_kinds).values("product")]
        if viewer.user is not None:
            subs.append(Rating.objects.filter(user=viewer.user).values("product"))
        viewer._owned_subqueries = subs
    owned = Q()
    for sub in subs:
        owned |= Q(**{f"{path}__in": sub})
    return qs.exclude(owned)


def _select_related_paths(prefix: str) -> list[str]:
    """Paths to select_related so reasons ("Popular in <category>") need no extra query."""
    cf = get_adapter().category_field()
    model = get_product_model()
    if cf and model._meta.get_field(cf).is_relation:
        return [f"{prefix}__{cf}" if prefix else cf]
    return [prefix] if prefix else []


def _neighbour_key(run_id: int, kind: str, product_pk: Any) -> str:
    return f"shopreco:nb:{run_id}:{kind}:{_key_part(product_pk)}"


def _neighbours(run_id: int, kind: str, product_pk: Any,
                cached: Any = None) -> list[tuple[Any, float]]:
    """The stored neighbours of a product in a run, best first: [(pk, score)].

    A run's results never change once it is live, so the list is cached by run id and shared
    by every shopper (no invalidation: a new run has new keys); filters are applied when the
    products are loaded. ``cached``: the value already fetched with other keys, if any."""
    if cached is not None:
        return cached
    rows = [
        (pk, float(score)) for pk, score in ItemSimilarity.objects.filter(
            run_id=run_id, kind=kind, product_id=product_pk,
        ).order_by("-score", "similar_product_id").values_list("similar_product_id", "score")
    ]
    _cache().set(_neighbour_key(run_id, kind, product_pk), rows,
                 timeout=NEIGHBOURS_CACHE_TIMEOUT)
    return rows


def warm_neighbour_lists(run_id: int, kind: str,
                         lists: Iterable[tuple[Any, list[tuple[Any, float]]]]) -> int:
    """Cache a run's neighbour lists ([(product pk, [(pk, score), ...] best first)]) as it
    goes live, so that no shopper's first view of a product after a run reads its list from
    the database: one query fewer on that view, and no burst of list reads right after
    activation. Returns the number of lists cached."""
    cache = _cache()
    n, batch = 0, {}
    for product_pk, rows in lists:
        batch[_neighbour_key(run_id, kind, product_pk)] = rows
        if len(batch) >= 1000:
            cache.set_many(batch, timeout=NEIGHBOURS_CACHE_TIMEOUT)
            n, batch = n + len(batch), {}
    if batch:
        cache.set_many(batch, timeout=NEIGHBOURS_CACHE_TIMEOUT)
        n += len(batch)
    return n


def _cache_is_private() -> bool:
    """Whether the serving cache lives in this process only (or nowhere): what a worker puts
    there, no web process reads."""
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.locmem import LocMemCache

    return isinstance(_cache(), LocMemCache | DummyCache)


def cache_is_shared() -> bool:
    """Whether the serving cache is one that all processes read and that holds many entries
    (Redis, Memcached): warming it from a worker helps the web processes only then. Not a
    per-process memory cache, and not the database or file caches, whose default
    MAX_ENTRIES of 300 would evict the popularity rankings and locks instead."""
    from django.core.cache.backends.db import DatabaseCache
    from django.core.cache.backends.filebased import FileBasedCache

    return not (_cache_is_private() or isinstance(_cache(), DatabaseCache | FileBasedCache))


def _category_key_of(product: Any) -> Any:
    """The product's category as a key (its pk for a relation), read without a query."""
    cf = get_adapter().category_field()
    if not cf:
        return None
    field = get_product_model()._meta.get_field(cf)
    if field.is_relation and type(get_adapter()).get_category is DefaultAdapter.get_category:
        return getattr(product, field.attname)
    return _category_pk(get_adapter().get_category(product))


def _load_in_order(candidates: list[Any], need: int, viewer: _Viewer, category: Any,
                   objs: dict) -> list[Any]:
    """The first ``need`` of ``candidates`` (pks, in order) that are available, in
    ``category`` and not owned by the viewer, in ONE query over the candidates' primary keys.
    Measured on MovieLens (bench/profile_api.py): loading ~40 candidates at once costs the
    same as loading only the first ``need`` and topping up, and less than ordering them in SQL
    (a CASE per candidate), so the short list is cut in Python."""
    if not candidates or need <= 0:
        return []
    model = get_product_model()
    qs = get_adapter().available(model._default_manager.filter(pk__in=candidates))
    qs = _owned_exclusions(qs.filter(**_category_filter("", category)), "pk", viewer)
    if _select_related_paths(""):
        qs = qs.select_related(*_select_related_paths(""))
    loaded = {p.pk: p for p in qs}
    objs.update(loaded)
    return [pk for pk in candidates if pk in loaded][:need]


def _product_widget(product: Any, kind: str, run_id: int | None, viewer: _Viewer, n: int,
                    category: Any, skip: set, objs: dict) -> list[_Cand]:
    """Neighbours of ``product`` plus the popular fill (same category first), as the first
    ``n`` candidates that pass every filter: the neighbour list and both popularity rankings
    come from the cache in one round trip, then one query loads the candidates (the stored
    neighbours and at most ``n`` popular ones) that pass every filter."""
    code = "also_bought" if kind == ItemSimilarity.Kind.ALSO_BOUGHT else "similar"
    same = _category_key_of(product) if category is None else None
    cats = ([same] if same is not None else []) + [category]
    nb_key = _neighbour_key(run_id, kind, product.pk) if run_id is not None else None
    got = _rankings(cats, also=[nb_key] if nb_key else [])
    neighbours = _neighbours(run_id, kind, product.pk, got.get(nb_key)) if nb_key else []
    scores = {pk: score for pk, score in neighbours if pk not in skip}
    fill: dict[Any, tuple[float, str]] = {}
    for cat in cats:  # n fill candidates at most: usually the neighbours are enough
        for pk, score, pop_code in got[_ranking_key(cat)][: n * 2]:
            if len(fill) >= n:
                break
            if pk not in skip and pk not in scores:
                fill.setdefault(pk, (score, pop_code))
    chosen = _load_in_order(list(scores) + list(fill), n, viewer, category, objs)
    objs[product.pk] = product
    return [
        _Cand(pk, scores[pk], code, product.pk, code) if pk in scores
        else _Cand(pk, fill[pk][0], fill[pk][1], None, "popular")
        for pk in chosen
    ]


def _personal(viewer: _Viewer, run_id: int | None, n: int, category: Any,
              objs: dict) -> list[_Cand]:
    if run_id is None or viewer.user is None:
        return []
    qs = Recommendation.objects.filter(
        run_id=run_id, user=viewer.user, product__in=_available_pks(),
        **_category_filter("product__", category),
    )
    qs = _owned_exclusions(qs, "product", viewer)
    qs = qs.select_related(*_select_related_paths("product"), "reason_product").order_by("rank")
    out = []
    for row in qs[:n]:
        objs[row.product_id] = row.product
        if row.reason_product_id is not None:
            objs[row.reason_product_id] = row.reason_product
        code = row.reason if row.reason in EVENT_REASON.values() else "similar"
        out.append(_Cand(row.product_id, float(row.score), code, row.reason_product_id,
                         "personal"))
    return out


def _recent(viewer: _Viewer, run_id: int | None, n: int, category: Any) -> list[_Cand]:
    """Item-based from the viewer's recent views, cart, purchases and good ratings: serves
    anonymous sessions and users whose personal list is not computed yet."""
    if run_id is None or not viewer.identified:
        return []
    limit = int(reco_settings.RECENT_ITEMS_FOR_COLD_START)
    weights = reco_settings.EVENT_WEIGHTS
    sources: dict[Any, tuple[str, float]] = {}
    for pk, kind in viewer.events().order_by("-created_at").values_list("product_id", "kind")[
        : limit * 5
    ]:
        if len(sources) >= limit:
            break
        if pk not in sources:
            sources[pk] = (EVENT_REASON.get(kind, "viewed"), float(weights.get(kind, 1.0)))
    if viewer.user is not None:
        mid = (float(reco_settings.RATING_MIN) + float(reco_settings.RATING_MAX)) / 2
        for pk, score in Rating.objects.filter(user=viewer.user, score__gte=mid).order_by(
            "-updated_at"
        ).values_list("product_id", "score")[:limit]:
            if pk not in sources or sources[pk][0] == "viewed":
                sources[pk] = ("rated", 1.0 + float(score) - mid)
    if not sources:
        return []
    qs = ItemSimilarity.objects.filter(
        run_id=run_id, kind=ItemSimilarity.Kind.SIMILAR, product_id__in=list(sources),
        similar_product__in=_available_pks(), **_category_filter("similar_product__", category),
    ).exclude(similar_product_id__in=list(sources))
    qs = _owned_exclusions(qs, "similar_product", viewer)
    totals: dict[Any, float] = {}
    best: dict[Any, tuple[float, Any]] = {}
    for cand, src, score in qs.values_list("similar_product_id", "product_id", "score"):
        contribution = float(score) * sources[src][1]
        totals[cand] = totals.get(cand, 0.0) + contribution
        if cand not in best or contribution > best[cand][0]:
            best[cand] = (contribution, src)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:n]
    return [_Cand(pk, s, sources[best[pk][1]][0], best[pk][1], "recent") for pk, s in ranked]


def popularity_ranking(category: Any = None) -> list[tuple[Any, float, str]]:
    """Available products ranked by time-decayed activity: [(pk, score, code)], code being
    "trending" (recent activity dominates), "new" (recently added) or "popular".

    Score = sum(weight * 0.5 ** (age_days / TRENDING_HALF_LIFE_DAYS)) over the last four half
    lives + 0.1 * log1p(all-time weight), plus a decaying bonus for new products so they get
    exposure before anyone has interacted with them. Shared by every visitor and cached for
    CACHE_TIMEOUT seconds; rebuilt by one request at a time while the others serve the
    previous copy."""
    return _rankings([category])[_ranking_key(category)]


def _ranking_key(category: Any) -> str:
    pk = _category_pk(category)
    if pk is None:  # all products: a key no category can have
        return "shopreco:pop-all"
    return f"shopreco:pop:c{_key_part(pk)}"


def _rankings(categories: list[Any], also: Iterable[str] = ()) -> dict[str, Any]:
    """The popularity rankings of ``categories`` (None: all products) and the ``also`` cache
    keys, read in ONE cache round trip; missing rankings are built now. Keyed by cache key."""
    keys = list(dict.fromkeys([_ranking_key(c) for c in categories] + list(also)))
    got = _cache().get_many(keys)
    now = time.time()
    for category in categories:
        key = _ranking_key(category)
        entry = got.get(key)
        if entry is None:
            got[key] = _rebuild_ranking(category, key, stale=None)
        elif entry["fresh_until"] < now:
            got[key] = _rebuild_ranking(category, key, stale=entry["ranking"])
        else:
            got[key] = entry["ranking"]
    return got


def refresh_rankings(local: bool = False) -> int:
    """Beat (``shopreco.tasks.refresh_rankings``, every CACHE_TIMEOUT / 2): rebuild the
    catalogue-wide ranking and those of the categories whose rankings requests have built
    (up to RANKINGS_KNOWN_MAX, first come first kept) before they fall due, so that no
    request builds one, or waits for the one building it after a cache restart. Rankings
    with more than half their CACHE_TIMEOUT still to go, and one a request is rebuilding
    right now, are left alone; a category that cannot be ranked any more is logged and
    forgotten. Nothing to do in a cache private to this process (the web processes would
    never read it) unless ``local``, when this process serves too. Returns the number
    rebuilt."""
    if _cache_is_private() and not local:
        return 0
    cache = _cache()
    known = list(cache.get(_RANKINGS_KNOWN_KEY) or [])
    categories = [None, *known]
    entries = cache.get_many([_ranking_key(c) for c in categories])
    soon = time.time() + int(reco_settings.CACHE_TIMEOUT) / 2
    n, forget = 0, []
    for category in categories:
        key = _ranking_key(category)
        entry = entries.get(key)
        if entry is not None and entry["fresh_until"] > soon:
            continue
        try:
            n += _build_under_lock(category, key) is not None
        except Exception:  # noqa: BLE001 - one bad category must not stop the others
            logger.exception("popularity ranking of category %r failed; forgotten", category)
            forget.append(category)
    if forget:
        cache.set(_RANKINGS_KNOWN_KEY, [c for c in known if c not in forget], timeout=None)
    return n


def _build_under_lock(category: Any, key: str) -> list | None:
    """Build and cache the ranking of ``category`` (cache key ``key``) unless another process
    is building it right now (then None): the lock every rebuild, by a request or by the
    beat task, takes first."""
    cache = _cache()
    lock = key + ":lock"
    if not cache.add(lock, 1, timeout=RANKING_LOCK_TIMEOUT):
        return None
    try:
        ranking = _build_ranking(category)
        timeout = int(reco_settings.CACHE_TIMEOUT)
        cache.set(key, {"ranking": ranking, "fresh_until": time.time() + timeout},
                  timeout=2 * timeout)
        return ranking
    finally:
        cache.delete(lock)


def _remember_category(category: Any) -> None:
    """Note a category whose ranking a request built, for :func:`refresh_rankings` (the
    first RANKINGS_KNOWN_MAX; called on rebuilds only, not per request). Two requests
    noting different categories at the same moment may lose one; it is noted again the
    next time a request has to build it."""
    cache = _cache()
    pk = _category_pk(category)
    known = cache.get(_RANKINGS_KNOWN_KEY) or []
    if pk not in known and len(known) < RANKINGS_KNOWN_MAX:
        cache.set(_RANKINGS_KNOWN_KEY, [*known, pk], timeout=None)


def _rebuild_ranking(category: Any, key: str,
                     stale: list | None) -> list[tuple[Any, float, str]]:
    """Rebuild a ranking once, not once per concurrent request: building the catalogue-wide
    one reads every rating (~0.3 s on MovieLens). The request that takes the lock builds it;
    meanwhile the others serve the ``stale`` copy (kept one more CACHE_TIMEOUT after it is
    due), or, on a cold cache, wait for the builder instead of repeating its work."""
    ranking = _build_under_lock(category, key)
    if ranking is not None:
        if category is not None:
            _remember_category(category)
        return ranking
    if stale is not None:
        return stale
    cache, lock = _cache(), key + ":lock"
    deadline = time.monotonic() + RANKING_LOCK_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.02)
        entry = cache.get(key)
        if entry is not None:
            return entry["ranking"]
        if cache.get(lock) is None:
            break  # the builder gave up (or the ranking cannot be cached): build it here
    return _build_ranking(category)


def _build_ranking(category: Any) -> list[tuple[Any, float, str]]:
    adapter = get_adapter()
    now = timezone.now()
    half_life = max(float(reco_settings.TRENDING_HALF_LIFE_DAYS), 0.01)
    cutoff = now - timedelta(days=4 * half_life)
    today = timezone.localdate(now)
    available = adapter.available()
    if category is not None:
        available = available.filter(**_category_filter("", category))
    avail_pks = available.values("pk")
    weights = reco_settings.EVENT_WEIGHTS
    recent: dict[Any, float] = {}
    base: dict[Any, float] = {}

    def add(pk: Any, weight: float, day: Any, n: int) -> None:
        base[pk] = base.get(pk, 0.0) + weight * n
        if day is not None:
            age = max((today - day).days, 0) + 0.5
            recent[pk] = recent.get(pk, 0.0) + weight * n * 0.5 ** (age / half_life)

    def bucketed(qs: QuerySet, field_name: str) -> QuerySet:
        return qs.annotate(
            _day=Case(
                When(**{f"{field_name}__gte": cutoff}, then=TruncDate(field_name)),
                default=Value(None),
                output_field=DateField(),
            )
        )

    events = (
        bucketed(Interaction.objects.filter(product__in=avail_pks), "created_at")
        .values("product_id", "kind", "_day")
        .annotate(_n=Count("id"))
        .values_list("product_id", "kind", "_day", "_n")
        .order_by()
    )
    for pk, kind, day, n in events:
        add(pk, float(weights.get(kind, 1.0)), day, n)
    ratings = (
        bucketed(Rating.objects.filter(product__in=avail_pks), "created_at")
        .values("product_id", "_day")
        .annotate(_n=Count("id"))
        .values_list("product_id", "_day", "_n")
        .order_by()
    )
    for pk, day, n in ratings:
        add(pk, RATING_POPULARITY_WEIGHT, day, n)
    scores = {pk: recent.get(pk, 0.0) + 0.1 * math.log1p(b) for pk, b in base.items()}
    codes = {
        pk: "trending" if recent.get(pk, 0.0) >= 1.0 and recent[pk] > 0.1 * math.log1p(base[pk])
        else "popular"
        for pk in base
    }
    created = adapter.created_field()
    if created:
        for pk, when in available.filter(**{f"{created}__gte": cutoff}).values_list(
            "pk", created
        ).order_by():
            age = max((now - when).total_seconds() / 86400.0, 0.0)
            bonus = 0.5 ** (age / half_life)
            if recent.get(pk, 0.0) < bonus:
                codes[pk] = "new"
            scores[pk] = scores.get(pk, 0.0) + bonus
    ranking = sorted(scores.items(), key=lambda kv: (-kv[1], str(kv[0])))[:POPULAR_RANKING_SIZE]
    return [(pk, round(score, 6), codes[pk]) for pk, score in ranking]


def _popular(viewer: _Viewer, n: int, category: Any, skip: set, objs: dict) -> list[_Cand]:
    """The head of the cached popularity ranking, loaded and filtered in one query."""
    ranking = [row for row in popularity_ranking(category) if row[0] not in skip][: n * 3 + 10]
    found = _load_products([pk for pk, _, _ in ranking], viewer) if ranking else {}
    objs.update(found)
    out = [_Cand(pk, score, code, None, "popular") for pk, score, code in ranking
           if pk in found][:n]
    if len(out) < n and len(ranking) < n * 3 + 10:
        # Not enough products with any activity: fill from the rest of the catalogue.
        taken = skip | {pk for pk, _, _ in ranking}
        qs = get_adapter().available().filter(**_category_filter("", category))
        qs = _owned_exclusions(qs.exclude(pk__in=list(taken)), "pk", viewer)
        if _select_related_paths(""):
            qs = qs.select_related(*_select_related_paths(""))
        for p in qs.order_by("-pk")[: n - len(out)]:
            objs[p.pk] = p
            out.append(_Cand(p.pk, 0.0, "catalogue", None, "popular"))
    return out


# --- reasons --------------------------------------------------------------------------------


def _category_name(product: Any) -> str:
    category = get_adapter().get_category(product) if product is not None else None
    return str(category) if category not in (None, "") else ""


def reason_text(code: str, product: Any, reason_product: Any = None) -> str:
    """The sentence shown under a recommended product (plain text; templates escape it)."""
    adapter = get_adapter()
    name = adapter.get_name(reason_product) if reason_product is not None else ""
    category = _category_name(product)
    if name:
        if code == "rated":
            return _("Because you rated %(name)s") % {"name": name}
        if code == "bought":
            return _("Because you bought %(name)s") % {"name": name}
        if code == "carted":
            return _("Because you added %(name)s to your cart") % {"name": name}
        if code == "viewed":
            return _("Because you viewed %(name)s") % {"name": name}
        if code == "also_bought":
            return _("Customers who bought %(name)s also bought this") % {"name": name}
        if code == "similar":
            return _("Shoppers who liked %(name)s also liked this") % {"name": name}
    if code == "trending":
        if category:
            return _("Popular in %(category)s this week") % {"category": category}
        return _("Popular this week")
    if code == "new":
        return _("New in %(category)s") % {"category": category} if category else _("New arrival")
    if code == "catalogue":
        return _("From our %(category)s range") % {"category": category} if category else _(
            "From our range"
        )
    if code in ("rated", "bought", "carted", "viewed", "similar"):
        return _("Picked for you")
    if category:
        return _("Popular in %(category)s") % {"category": category}
    return _("A customer favourite")


def _reason_kind(code: str) -> str:
    return {"new": "trending", "catalogue": "popular"}.get(code, code)


# --- the one serving path -------------------------------------------------------------------


def _load_products(pks: Iterable[Any], viewer: _Viewer | None = None,
                   also: Iterable[Any] = ()) -> dict[Any, Any]:
    """Products ``pks`` that are still available and not owned by ``viewer``, plus the ``also``
    products (reasons, shown by name whatever their state), in ONE query."""
    pks, also = set(pks), set(also) - {None}
    if not pks and not also:
        return {}
    model = get_product_model()
    # Availability and ownership are checked on the candidate rows only (pk IN ...): a
    # correlated check over the whole catalogue made PostgreSQL scan every product.
    ok = get_adapter().available(model._default_manager.filter(pk__in=list(pks)))
    if viewer is not None:
        ok = _owned_exclusions(ok, "pk", viewer)
    if also:
        qs = model._default_manager.filter(pk__in=list(pks | also)).annotate(
            _shopreco_ok=Exists(ok.filter(pk=OuterRef("pk"))))
    else:
        qs = ok.annotate(_shopreco_ok=Value(True))
    if _select_related_paths(""):
        qs = qs.select_related(*_select_related_paths(""))
    return {p.pk: p for p in qs if p.pk in also or p._shopreco_ok}


def _cache_key(*parts: Any) -> str:
    raw = "|".join(str(p) for p in parts)
    return "shopreco:list:" + hashlib.sha1(raw.encode()).hexdigest()


@dataclass
class _Plan:
    """Everything decided before the list is read: who, which run, what to skip, cache key."""

    widget: str
    limit: int
    viewer: _Viewer
    allowed: bool
    run_id: int | None
    memo: dict
    shown: set
    skip: set
    n: int
    key_parts: tuple
    product: Any
    category: Any
    dedupe: bool
    request: Any
    _key: str | None = None

    @property
    def key(self) -> str:
        """The per-viewer cache key of the list; reads the viewer's version tokens (one cache
        round trip per request), so only paths that cache per viewer pay for it."""
        if self._key is None:
            version, views_version = _versions(self.viewer.key, self.memo)
            self._key = _cache_key(*self.key_parts[:3], version,
                                   views_version if self.widget == "for-you" else "",
                                   *self.key_parts[3:])
        return self._key


def _versions(viewer_key: str, memo: dict) -> tuple[str, str]:
    """The viewer's list and recent-views tokens, read once per request (one cache round
    trip for all widgets of a page)."""
    got = memo.get(("versions", viewer_key))
    if got is None:
        if viewer_key.startswith("anon"):
            got = ("0", "0")
        else:
            cache = _cache()
            keys = [_version_key(viewer_key), _version_key(viewer_key + ":views")]
            tokens = cache.get_many(keys)
            if len(tokens) < 2:  # first visit: create the missing ones, keep any racing winner
                for key in keys:
                    if key not in tokens:
                        cache.add(key, uuid.uuid4().hex[:12], timeout=None)
                tokens = cache.get_many(keys)
            got = (tokens.get(keys[0]) or _version(viewer_key),
                   tokens.get(keys[1]) or _version(viewer_key + ":views"))
        memo[("versions", viewer_key)] = got
    return got


def _plan(widget: str, *, limit: Any, product: Any = None, user: Any = None,
          request: Any = None, category: Any = None, exclude: Iterable[Any] = (),
          dedupe: bool = True, ignore_gpc: bool = False) -> _Plan:
    limit = clean_limit(limit)
    viewer = _viewer_from(user, request)
    allowed = (ignore_gpc or not _gpc(request)) and (
        viewer.user is None or _state(viewer.user, request)[1]
    )
    if not allowed:
        viewer = _Viewer()  # popular lists only, nothing personal, nothing tracked
    run_id = _state(viewer.user, request)[0]
    memo = _memo(request)
    shown: set = memo.get("shown", set()) if dedupe else set()
    skip = {_to_pk(x) for x in exclude}
    if product is not None:
        skip.add(product.pk)
    n = limit + len(shown) + 4
    key_parts = (widget, getattr(product, "pk", ""), viewer.key, run_id,
                 _category_pk(category), sorted(map(str, skip)), n)
    return _Plan(widget, limit, viewer, allowed, run_id, memo, shown, skip, n, key_parts,
                 product, category, dedupe, request)


def _serve(
    widget: str,
    *,
    limit: Any,
    product: Any = None,
    user: Any = None,
    request: Any = None,
    category: Any = None,
    exclude: Iterable[Any] = (),
    log: bool = True,
    use_cache: bool = True,
    dedupe: bool = True,
    ignore_gpc: bool = False,
) -> RecoList:
    plan = _plan(widget, limit=limit, product=product, user=user, request=request,
                 category=category, exclude=exclude, dedupe=dedupe, ignore_gpc=ignore_gpc)
    if widget in _PRODUCT_WIDGETS:
        # Built from the shared per-run neighbour lists and rankings, re-checked against the
        # database on every request anyway: a per-viewer copy would save nothing.
        use_cache = False
    cands = _cache().get(plan.key) if use_cache else None
    return _materialise(plan, cands, log=log, use_cache=use_cache)


def _materialise(plan: _Plan, cands: list[_Cand] | None, *, log: bool = True,
                 use_cache: bool = True, objs: dict | None = None, checked: set = frozenset(),
                 rejected: set = frozenset(), rec_id: str | None = None) -> RecoList:
    """The list for ``plan`` from cached candidates (or computed now), with objects loaded
    and every filter re-applied. ``objs``: products already loaded on this request (checked
    ones, and reason products); ``checked``/``rejected``: pks that passed/failed the
    availability and ownership check on this request."""
    widget, limit, viewer, run_id = plan.widget, plan.limit, plan.viewer, plan.run_id
    product, category, skip, shown, n = plan.product, plan.category, plan.skip, plan.shown, plan.n
    objs = dict(objs or {})
    unchecked = set(objs) - set(checked)  # reason products: shown by name, never as items
    fresh = cands is None
    if fresh:
        cands = []
        need = limit + len(shown)
        if widget in ("similar", "also-bought"):
            kind = (ItemSimilarity.Kind.SIMILAR if widget == "similar"
                    else ItemSimilarity.Kind.ALSO_BOUGHT)
            cands = _product_widget(product, kind, run_id, viewer, n, category, skip, objs)
        elif widget == "for-you":
            cands = [c for c in _personal(viewer, run_id, n, category, objs) if c.pk not in skip]
            if len(cands) < need:
                have = skip | {c.pk for c in cands}
                cands += [c for c in _recent(viewer, run_id, n, category) if c.pk not in have]
        if len(cands) < need:
            have = skip | {c.pk for c in cands}
            cands += _popular(viewer, n - len(cands), category, have, objs)
        if use_cache:
            _cache().set(plan.key, cands, timeout=reco_settings.CACHE_TIMEOUT)

    chosen = [c for c in cands if c.pk not in shown and c.pk not in rejected][: limit + 4]
    # Objects not loaded by the list query (a cache hit, or the recent step) are loaded now,
    # re-checking availability and ownership; reason products are looked up by pk.
    if product is not None:
        objs[product.pk] = product
    load = {c.pk for c in chosen if c.pk not in objs or c.pk in unchecked}
    if load:
        reasons = {c.reason_pk for c in chosen} - set(objs) - load
        loaded = _load_products(load, viewer, also=reasons)
        objs.update(loaded)
        chosen = [c for c in chosen if c.pk in objs and (c.pk not in loaded
                                                          or loaded[c.pk]._shopreco_ok)]
    reasons = {c.reason_pk for c in chosen[:limit]} - set(objs) - {None}
    if reasons:
        objs.update(_load_products((), also=reasons))
    chosen = chosen[:limit]
    if len(chosen) < limit:
        # Page de-dup or a stale cache ate the margin: top up from the popular ranking.
        have = skip | shown | {c.pk for c in chosen}
        chosen += _popular(viewer, limit - len(chosen), category, have, objs)

    items = [
        RecoItem(
            product=objs[c.pk],
            score=c.score,
            reason=reason_text(c.code, objs[c.pk], objs.get(c.reason_pk)),
            reason_kind=_reason_kind(c.code),
            reason_product=objs.get(c.reason_pk),
        )
        for c in chosen
    ]
    source = chosen[0].source if chosen else "popular"
    rec_id = rec_id or new_recommendation_id()
    _served(plan, [c.pk for c in chosen], rec_id, log=log)
    return RecoList(widget=widget, recommendation_id=rec_id, items=items, source=source)


def _served(plan: _Plan, pks: list, rec_id: str, *, log: bool) -> None:
    """Page de-dup and the impression of a list just served."""
    if plan.dedupe and plan.request is not None:
        plan.memo.setdefault("shown", set()).update(pks)
    if log and reco_settings.LOG_IMPRESSIONS and pks:
        impression = Impression(
            recommendation_id=rec_id,
            widget=plan.widget,
            user=plan.viewer.user if plan.allowed else None,
            session_key=plan.viewer.session_key if plan.allowed else "",
            products=[_json_pk(pk) for pk in pks],
        )
        if plan.memo.get("middleware"):
            # ShopRecoMiddleware writes all impressions of the page in one INSERT afterwards.
            plan.memo.setdefault("impressions", []).append(impression)
        else:
            impression.save()


# --- rendered widgets -----------------------------------------------------------------------

# Stands for the recommendation id in cached widget HTML; every render gets a fresh id.
RECOMMENDATION_ID_PLACEHOLDER = "0shopreco0recommendation0id0"
_CATALOGUE_VERSION_KEY = "shopreco:catalogue"


def _catalogue_version() -> str:
    """Renewed whenever a product is saved or deleted: cached widget HTML shows names and
    prices, so it must not outlive a product edit."""
    cache = _cache()
    token = cache.get(_CATALOGUE_VERSION_KEY)
    if token is None:
        token = uuid.uuid4().hex[:12]
        cache.add(_CATALOGUE_VERSION_KEY, token, timeout=None)
        token = cache.get(_CATALOGUE_VERSION_KEY) or token
    return token


def _product_changed(sender: Any, **kwargs: Any) -> None:
    _cache().set(_CATALOGUE_VERSION_KEY, uuid.uuid4().hex[:12], timeout=None)


# Connected for the product model only ("app_label.Model" senders resolve lazily): a receiver
# without a sender would run on every save and, for post_delete, turn off Django's fast
# (single-statement) deletes for every model.
post_save.connect(_product_changed, sender=settings.SHOPRECO_PRODUCT_MODEL,
                  dispatch_uid="shopreco.services.product_saved")
post_delete.connect(_product_changed, sender=settings.SHOPRECO_PRODUCT_MODEL,
                    dispatch_uid="shopreco.services.product_deleted")


def widget_html(widget: str, render: Any, *, variant: str, limit: Any = None,
                product: Any = None, user: Any = None, request: Any = None,
                category: Any = None) -> SafeString:
    """The widget's HTML, rendered by ``render(reco_list) -> str`` and cached per served list.

    Same list, filters, de-dup and impression as the list functions; the cached HTML is
    reused only when the list's products, re-checked for availability and ownership on this
    request, are exactly the ones it shows (so a product that became unavailable is never
    shown), and it is dropped whenever a product is edited. ``variant`` names the template
    and title. The recommendation id is fresh on every render. ``render`` must return
    escaped HTML (a rendered template)."""
    if widget not in WIDGETS:
        raise ValueError(f"widget: one of {', '.join(WIDGETS)}.")
    plan = _plan(widget, limit=limit, product=product, user=user, request=request,
                 category=category)
    cache = _cache()
    html_key = _cache_key("html", plan.key, variant, _catalogue_version())
    use_html = bool(reco_settings.CACHE_WIDGET_HTML)
    got = cache.get_many([plan.key, html_key] if use_html else [plan.key])
    cands, cached = got.get(plan.key), got.get(html_key)
    objs: dict[Any, Any] = {}
    load: set = set()
    rejected: set = set()
    if cands is not None and cached is not None:
        # The same availability/ownership check as a cache hit of the list (one query).
        chosen = [c for c in cands if c.pk not in plan.shown][: plan.limit + 4]
        page = getattr(product, "pk", None)  # the reason of similar/also-bought: in hand
        load = {c.pk for c in chosen} - {page}
        objs = _load_products(load, plan.viewer,
                              also={c.reason_pk for c in chosen} - load - {None, page})
        rejected = {pk for pk in load if pk not in objs or not objs[pk]._shopreco_ok}
        picks = [c.pk for c in chosen if c.pk in load and c.pk not in rejected][: plan.limit]
        if picks == cached["pks"] and len(picks) == plan.limit:
            rec_id = new_recommendation_id()
            _served(plan, picks, rec_id, log=True)
            return format_html(cached["html"], rec=rec_id)
    rec_id = new_recommendation_id()
    reco = _materialise(plan, cands, objs=objs, checked=load - rejected, rejected=rejected,
                        rec_id=rec_id)
    html = str(render(RecoList(widget=reco.widget, items=reco.items, source=reco.source,
                               recommendation_id=RECOMMENDATION_ID_PLACEHOLDER)))
    # Stored as a format string: literal braces doubled, the id a replacement field, so
    # format_html() puts a fresh (escaped) id in without re-reading the rest as markup.
    stored = html.replace("{", "{{").replace("}", "}}").replace(
        RECOMMENDATION_ID_PLACEHOLDER, "{rec}")
    if use_html and reco.items:
        cache.set(html_key, {"pks": [i.pk for i in reco.items], "html": stored},
                  timeout=reco_settings.CACHE_TIMEOUT)
    return format_html(stored, rec=rec_id)


def similar_products(product: Any, limit: Any = None, *, user: Any = None, request: Any = None,
                     category: Any = None, exclude: Iterable[Any] = ()) -> RecoList:
    """"You may also like": the product's CF neighbours, then popular in its category."""
    if product is None:
        raise ValueError("product: a product is required.")
    return _serve("similar", limit=limit, product=product, user=user, request=request,
                  category=category, exclude=exclude)


def also_bought(product: Any, limit: Any = None, *, user: Any = None, request: Any = None,
                exclude: Iterable[Any] = ()) -> RecoList:
    """"Customers who bought this also bought": co-purchase neighbours, then popular."""
    if product is None:
        raise ValueError("product: a product is required.")
    return _serve("also-bought", limit=limit, product=product, user=user, request=request,
                  exclude=exclude)


def recommended_for(user_or_session: Any, limit: Any = None, *, request: Any = None,
                    category: Any = None, exclude: Iterable[Any] = ()) -> RecoList:
    """Personal list -> item-based from recent activity (anonymous sessions too) -> popular."""
    return _serve("for-you", limit=limit, user=user_or_session, request=request,
                  category=category, exclude=exclude)


def popular(limit: Any = None, *, category: Any = None, user: Any = None, request: Any = None,
            exclude: Iterable[Any] = ()) -> RecoList:
    """Popular and trending products (time-decayed), optionally within one category."""
    return _serve("popular", limit=limit, user=user, request=request, category=category,
                  exclude=exclude)


def preview_for_user(user: Any, limit: Any = None) -> RecoList:
    """What ``user`` would see in "Recommended for you", for staff: same filters and chain,
    not cached, not logged, no page de-dup."""
    return _serve("for-you", limit=limit, user=user, request=None, log=False, use_cache=False,
                  dedupe=False)


# --- events ---------------------------------------------------------------------------------


def _attribution(request: Any) -> dict | None:
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return None
    return session.get(SESSION_ATTRIBUTION_KEY) or {}


def remember_click(request: Any, product_pk: Any, recommendation_id: str) -> bool:
    """Remember in the session that ``product_pk`` was reached from a recommendation, so a
    later cart or purchase of it is credited to that list. Returns False for unknown ids."""
    if not _valid_rec_id(recommendation_id, product_pk):
        return False
    return _remember(request, product_pk, recommendation_id)


def _remember(request: Any, product_pk: Any, recommendation_id: str) -> bool:
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return False
    memory = dict(session.get(SESSION_ATTRIBUTION_KEY) or {})
    memory.pop(str(product_pk), None)
    memory[str(product_pk)] = recommendation_id
    while len(memory) > SESSION_ATTRIBUTION_MAX:
        memory.pop(next(iter(memory)))
    session[SESSION_ATTRIBUTION_KEY] = memory
    return True


def _valid_rec_id(recommendation_id: Any, product_pk: Any) -> bool:
    """A well-formed id of a list that really showed this product (when impressions are
    logged), so forged or stale ids cannot be credited."""
    if not isinstance(recommendation_id, str) or not _REC_ID_RE.match(recommendation_id):
        return False
    if not reco_settings.LOG_IMPRESSIONS:
        return True
    products = (
        Impression.objects.filter(recommendation_id=recommendation_id)
        .values_list("products", flat=True)
        .first()
    )
    return products is not None and str(product_pk) in {str(p) for p in products}


def track(request: Any, product: Any, kind: str,
          recommendation_id: str | None = None) -> Interaction | None:
    """Record a view, cart or purchase (any kind in EVENT_WEIGHTS) for the current shopper.

    Returns None, recording nothing, when personalisation is off for this shopper (opt-out or
    Sec-GPC). Anonymous visitors are recorded under their session key. Without an explicit
    ``recommendation_id`` the one remembered for this product in the session (from a clicked
    recommendation) is used, so carts and purchases are credited too."""
    if product is None or getattr(product, "pk", None) is None:
        raise ValueError("product: a saved product is required.")
    if kind not in reco_settings.EVENT_WEIGHTS:
        raise ValueError(
            f"kind: unknown event type {kind!r}; expected one of "
            f"{', '.join(sorted(reco_settings.EVENT_WEIGHTS))}."
        )
    user = getattr(request, "user", None) if request is not None else None
    if not personalization_allowed(user, request):
        return None
    if recommendation_id:
        if _valid_rec_id(recommendation_id, product.pk):
            _remember(request, product.pk, recommendation_id)
        else:
            recommendation_id = None
    else:
        memory = _attribution(request) or {}
        recommendation_id = memory.get(str(product.pk))
    is_user = _is_user(user)
    event = Interaction.objects.create(
        user=user if is_user else None,
        session_key="" if is_user else _session_key(request, create=True),
        product=product,
        kind=kind,
        recommendation_id=recommendation_id or None,
    )
    return event


def mark_viewed(request: Any, product: Any) -> Interaction | None:
    """A product page was rendered. With VIEW_TRACKING = "middleware" and ShopRecoMiddleware
    installed, the view is recorded after the response succeeded (no event for error pages);
    otherwise it is recorded now. The ``?rec=`` id of the link that led here is credited."""
    memo = _memo(request)
    if reco_settings.VIEW_TRACKING == "middleware" and memo.get("middleware"):
        memo["viewed"] = product
        return None
    return track(request, product, "view", _rec_from_query(request))


def _rec_from_query(request: Any) -> str | None:
    params = getattr(request, "GET", None)
    value = params.get("rec") if params is not None else None
    return value or None


def flush_impressions(request: Any) -> int:
    """Write the impressions queued while rendering this request (one INSERT); returns how
    many. Called by ShopRecoMiddleware once the response has been sent."""
    queued = _memo(request).pop("impressions", None)
    if not queued:
        return 0
    if len(queued) == 1:
        queued[0].save()  # one statement; bulk_create adds BEGIN and COMMIT round trips
    else:
        Impression.objects.bulk_create(queued)
    return len(queued)


def record_marked_view(request: Any, response_status: int) -> Interaction | None:
    """Called by ShopRecoMiddleware once the response is known: records the marked view."""
    product = _memo(request).pop("viewed", None)
    if product is None or response_status >= 400:
        return None
    return track(request, product, "view", _rec_from_query(request))
