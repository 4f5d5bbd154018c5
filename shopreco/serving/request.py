"""Who a list is for, and the request state every list needs: the served run and whether
this shopper may be personalised, read once per request and memoised on it."""

from __future__ import annotations

from typing import Any

from django.db import connections, router
from django.db.models import Model, QuerySet

from shopreco import cache
from shopreco.conf import get_product_model, reco_settings
from shopreco.models import Deployment, Experiment, Interaction, Preference
from shopreco.serving import experiments

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
    """The state query: active run id, the user's preference and whether an experiment runs,
    hand-written because the ORM spends longer compiling it (correlated subqueries) than the
    database runs it. Identifiers come from model metadata; values are bound parameters."""
    qn = connection.ops.quote_name
    table = qn(Deployment._meta.db_table)
    run = qn(Deployment._meta.get_field("run").column)
    pk = qn(Deployment._meta.pk.column)
    pref_table = qn(Preference._meta.db_table)
    pref_value = qn(Preference._meta.get_field("personalize").column)
    pref_user = qn(Preference._meta.get_field("user").column)
    exp_table = qn(Experiment._meta.db_table)
    exp_status = qn(Experiment._meta.get_field("status").column)
    return (
        f"SELECT (SELECT {run} FROM {table} ORDER BY {pk} DESC LIMIT 1),"
        f" (SELECT {pref_value} FROM {pref_table} WHERE {pref_user} = %s LIMIT 1),"
        f" (SELECT 1 FROM {exp_table} WHERE {exp_status} = %s LIMIT 1)"
    )


def _base_state(user: Any, request: Any) -> tuple[int | None, bool, list]:
    """(live run id, personalize preference, running experiments), memoised per request.

    For a signed-in shopper ONE query reads all three (the experiments' arms are read from
    the cache only when one runs). Anyone else needs no query while the cache holds the run
    id and the running experiments (one round trip for both)."""
    scratch = memo(request)
    user_pk = user.pk if is_user(user) else None
    cached = scratch.get(("base", user_pk))
    if cached is not None:
        return cached
    raw = None
    if user_pk is None:
        found_run, run_id, found_exp, raw = cache.served_state()
        if found_run and found_exp:
            got = (run_id, True, experiments.running(raw) if raw else [])
            scratch[("base", None)] = got
            return got
    connection = connections[router.db_for_read(Deployment)]
    with connection.cursor() as cursor:
        cursor.execute(_state_sql(connection), [user_pk, Experiment.Status.RUNNING.value])
        run_id, pers, any_running = cursor.fetchone()
    if user_pk is None:  # a guest's miss: fill the cache (signed-in requests never read it)
        cache.remember_served_run(run_id)
    if any_running:
        running = experiments.running(raw)
    else:
        running = []
        if user_pk is None:
            cache.remember_running_experiments([])
    found = (run_id, pers is None or bool(pers), running)
    if request is not None:
        scratch[("base", user_pk)] = found
    return found


def state(user: Any, request: Any) -> tuple[int | None, bool]:
    """(served run id, personalize preference), memoised per request.

    The run is the latest deployment's (:meth:`RecomputeRun.live`), unless an experiment
    runs and the shopper of this request is in an arm that serves another run
    (:func:`viewer_arm`): every list then follows the arm. For a signed-in shopper one query
    reads run and preference, so a changed preference takes effect on the next request;
    anyone else needs only the run id, which the cache keeps until a run is activated
    (:func:`shopreco.cache.served_run`)."""
    scratch = memo(request)
    user_pk = user.pk if is_user(user) else None
    cached = scratch.get(("state", user_pk))
    if cached is not None:
        return cached
    run_id, pers, running = _base_state(user, request)
    if running:
        arm = viewer_arm(user, request, running)
        if arm is not None and arm.run_id is not None:
            run_id = arm.run_id
    found = (run_id, pers)
    if request is not None:
        scratch[("state", user_pk)] = found
    return found


def _arm_key(user: Any, request: Any) -> tuple[Any, Any]:
    """Who the experiment sees on this request: ``user`` if given, else the signed-in user,
    else the browser's session."""
    if not is_user(user) and request is not None:
        user = getattr(request, "user", None)
    return user if is_user(user) else None, ("arm", user.pk if is_user(user) else None)


def viewer_arm(user: Any, request: Any, running: list | None = None
               ) -> experiments.RunningArm | None:
    """The arm of this request's shopper in the running experiments, drawn and stored on
    their first list, memoised per request. Never enrolled: no request (a staff preview), an
    opted-out user, a browser sending Sec-GPC (with HONOR_GPC), an anonymous client without
    a session (nothing to key its arm by: a cookie-less client would be drawn anew on every
    request)."""
    if request is None:
        return None
    who, key = _arm_key(user, request)
    scratch = memo(request)
    if key in scratch:
        return scratch[key]
    if running is None:
        running = _base_state(who, request)[2]
    arm = None
    if running and not gpc(request):
        if who is not None:
            if _base_state(who, request)[1]:
                arm = experiments.assign(running, user_pk=who.pk)
        else:
            visitor = session_key(request)
            if visitor:
                arm = experiments.assign(running, visitor=visitor)
    scratch[key] = arm
    scratch["arms"] = True
    return arm


def served_arm_id(user: Any, request: Any) -> int | None:
    """The arm already decided on this request for ``user`` (or the request's shopper), for
    the impression of a list: read from the request memo, never a query."""
    if request is None:
        return None
    scratch = memo(request)
    if not scratch.get("arms"):  # no experiment ran on this request: leave request.user be
        return None
    arm = scratch.get(_arm_key(user, request)[1])
    return arm.id if arm is not None else None


def active_run_id(request: Any = None) -> int | None:
    """Id of the run being served to this request's shopper (the latest deployment's, or
    their experiment arm's), memoised per request."""
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
    return _base_state(user, request)[1]


def versions(viewer_key: str, scratch: dict) -> tuple[str, str]:
    """The viewer's list and recent-views tokens, read once per request (one cache round
    trip for all widgets of a page)."""
    got = scratch.get(("versions", viewer_key))
    if got is None:
        got = scratch[("versions", viewer_key)] = cache.versions(viewer_key)
    return got
