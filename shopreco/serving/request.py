"""Who a list is for, and the request state every list needs: the served run and whether
this shopper may be personalised, read once per request and memoised on it."""

from __future__ import annotations

from typing import Any

from django.db import connections, router
from django.db.models import Model, QuerySet

from shopreco import cache
from shopreco.conf import get_product_model, reco_settings
from shopreco.models import Deployment, Interaction, Preference

_MEMO_ATTR = "_shopreco_memo"


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


def json_pk(pk: Any) -> Any:
    return pk if isinstance(pk, int | str) else str(pk)


def to_pk(value: Any) -> Any:
    """A product, or a primary key in any form, as the model's native pk value."""
    if isinstance(value, Model):
        return value.pk
    return get_product_model()._meta.pk.to_python(value)


def base_request(request: Any) -> Any:
    """The Django HttpRequest behind a DRF Request (the memo lives there)."""
    return getattr(request, "_request", request)


def memo(request: Any) -> dict:
    """Per-request scratch space: state, version tokens, products shown on the page (for
    de-duplication across widgets), queued impressions and the marked view."""
    if request is None:
        return {}
    base = base_request(request)
    found = getattr(base, _MEMO_ATTR, None)
    if found is None:
        found = {"shown": set()}
        try:
            setattr(base, _MEMO_ATTR, found)
        except AttributeError:  # pragma: no cover - exotic request objects
            pass
    return found


def is_user(obj: Any) -> bool:
    return obj is not None and getattr(obj, "is_authenticated", False) and obj.pk is not None


# Where the anonymous id lives in the session data.
ANONYMOUS_ID_SESSION_KEY = "shopreco_anon"


def session_key(request: Any, create: bool = False) -> str:
    """The anonymous shopper's id: the session key under which shopreco first saw them, kept
    in the session data. Signing in gives the browser a new session key but keeps the data
    (``login()`` calls ``cycle_key``), so export, erasure and attribution still find what
    they did before. Returns "" for a request without a session, unless ``create``."""
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return ""
    pinned = session.get(ANONYMOUS_ID_SESSION_KEY)  # loads it: a stale cookie loses its key
    if pinned:
        return pinned
    if not session.session_key:
        if not create:
            return ""
        session.save()
    session[ANONYMOUS_ID_SESSION_KEY] = session.session_key
    return session.session_key


class Viewer:
    """Who the list is for: a user, an anonymous session, or nobody in particular."""

    def __init__(self, user: Any = None, session_key: str = "") -> None:
        self.user = user if is_user(user) else None
        self.session_key = "" if self.user else (session_key or "")
        self.owned_subqueries: list | None = None  # built once, see products
        self.cart: list | None = None  # the adapter's cart_products, when it says

    @property
    def key(self) -> str:
        return cache.viewer_key(self.user.pk if self.user is not None else None,
                                self.session_key)

    @property
    def identified(self) -> bool:
        return self.user is not None or bool(self.session_key)

    def events(self) -> QuerySet:
        if self.user is not None:
            return Interaction.objects.filter(user=self.user)
        if self.session_key:
            return Interaction.objects.filter(user__isnull=True, session_key=self.session_key)
        return Interaction.objects.none()


def viewer_from(user: Any, request: Any) -> Viewer:
    """The viewer of a user, a session key (a string) or, when ``user`` is None, the request."""
    if isinstance(user, str):
        return Viewer(None, user)
    if user is None and request is not None:
        user = getattr(request, "user", None)
    if is_user(user):
        return Viewer(user)
    return Viewer(None, session_key(request))


def _state_sql(connection: Any) -> str:
    """The state query: active run id and the user's preference, hand-written because the ORM
    spends longer compiling it (two correlated subqueries) than the database runs it.
    Identifiers come from model metadata; values are bound parameters."""
    qn = connection.ops.quote_name
    table = qn(Deployment._meta.db_table)
    run = qn(Deployment._meta.get_field("run").column)
    pk = qn(Deployment._meta.pk.column)
    pref_table = qn(Preference._meta.db_table)
    pref_value = qn(Preference._meta.get_field("personalize").column)
    pref_user = qn(Preference._meta.get_field("user").column)
    return (
        f"SELECT (SELECT {run} FROM {table} ORDER BY {pk} DESC LIMIT 1),"
        f" (SELECT {pref_value} FROM {pref_table} WHERE {pref_user} = %s LIMIT 1)"
    )


def state(user: Any, request: Any) -> tuple[int | None, bool]:
    """(active run id, personalize preference), memoised per request.

    For a signed-in shopper ONE query reads both: a changed preference takes effect on the
    next request. Anyone else needs only the run id, which the cache keeps until a run is
    activated (:func:`shopreco.cache.served_run`). The run is the latest deployment's
    (:meth:`RecomputeRun.live`)."""
    scratch = memo(request)
    user_pk = user.pk if is_user(user) else None
    cached = scratch.get(("state", user_pk))
    if cached is not None:
        return cached
    if user_pk is None:
        found, run_id = cache.served_run()
        if found:
            scratch[("state", None)] = (run_id, True)
            return run_id, True
    connection = connections[router.db_for_read(Deployment)]
    with connection.cursor() as cursor:
        cursor.execute(_state_sql(connection), [user_pk])
        run_id, pers = cursor.fetchone()
    found = (run_id, pers is None or bool(pers))
    cache.remember_served_run(run_id)
    if request is not None:
        scratch[("state", user_pk)] = found
    return found


def active_run_id(request: Any = None) -> int | None:
    """Id of the run being served (the latest deployment's), memoised per request."""
    return state(None, request)[0]


def gpc(request: Any) -> bool:
    """Whether the browser sends Sec-GPC: 1 and HONOR_GPC is on."""
    if request is None or not reco_settings.HONOR_GPC:
        return False
    headers = getattr(request, "headers", None)
    return bool(headers) and headers.get("Sec-GPC", "").strip() == "1"


def personalization_allowed(user: Any, request: Any = None) -> bool:
    """False when the user opted out (Preference.personalize) or the browser sends Sec-GPC: 1
    and HONOR_GPC is on: such visitors get popular lists only and nothing is tracked."""
    if gpc(request):
        return False
    if user is None and request is not None:
        user = getattr(request, "user", None)
    if not is_user(user):
        return True
    return state(user, request)[1]


def versions(viewer_key: str, scratch: dict) -> tuple[str, str]:
    """The viewer's list and recent-views tokens, read once per request (one cache round
    trip for all widgets of a page)."""
    got = scratch.get(("versions", viewer_key))
    if got is None:
        got = scratch[("versions", viewer_key)] = cache.versions(viewer_key)
    return got
