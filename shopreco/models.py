"""shopreco's data: what shoppers did (ratings, events) and what a recompute produced.

Products are referenced through ``settings.SHOPRECO_PRODUCT_MODEL`` with a real foreign key,
so serving queries join in the database and integer, UUID and text keys all work.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, FloatField, Q, Value
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _

from shopreco.conf import reco_settings


@deconstructible
class RatingScaleValidator:
    """Checks a score against the configured scale at validation time, not import time."""

    def __call__(self, value: float) -> None:
        low, high = float(reco_settings.RATING_MIN), float(reco_settings.RATING_MAX)
        if value is None or not (low <= float(value) <= high):
            raise ValidationError(
                _("Score must be between %(low)s and %(high)s."),
                code="out_of_scale",
                params={"low": low, "high": high},
            )
        step = 0.5 if reco_settings.RATING_HALF_STARS else 1.0
        if (float(value) - low) / step != int((float(value) - low) / step):
            raise ValidationError(
                _("Score must be a multiple of %(step)s."), code="bad_step", params={"step": step}
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RatingScaleValidator)


@deconstructible
class EventKindValidator:
    """Accepts the kinds configured in ``SHOPRECO["EVENT_WEIGHTS"]`` (extensible by setting)."""

    def __call__(self, value: str) -> None:
        if value not in reco_settings.EVENT_WEIGHTS:
            raise ValidationError(
                _("Unknown event type %(value)s; expected one of %(kinds)s."),
                code="bad_kind",
                params={"value": value, "kinds": ", ".join(sorted(reco_settings.EVENT_WEIGHTS))},
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventKindValidator)


def validate_rating_score(value: float) -> None:
    RatingScaleValidator()(value)


def new_recommendation_id() -> str:
    """A fresh, unguessable id for one served list."""
    return uuid.uuid4().hex


class Rating(models.Model):
    """An explicit rating: one per user and product, updated in place when re-rated."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shopreco_ratings"
    )
    product = models.ForeignKey(
        settings.SHOPRECO_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    score = models.FloatField(validators=[RatingScaleValidator()])
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "product"], name="shopreco_rating_unique")
        ]
        indexes = [models.Index(fields=["product", "user"], name="shopreco_rating_prod_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} rated {self.product_id}: {self.score}"


class Interaction(models.Model):
    """An implicit event (view, cart, purchase, ...); anonymous visitors keep their session key."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="shopreco_interactions",
    )
    session_key = models.CharField(max_length=64, blank=True, default="", db_index=True)
    product = models.ForeignKey(
        settings.SHOPRECO_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=32, validators=[EventKindValidator()])
    recommendation_id = models.CharField(max_length=64, null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # What a purchase was worth (the order line's price times its quantity) when the shop
    # said so; revenue figures price the others at the adapter's current price.
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at"], name="shopreco_event_user_idx"),
            models.Index(fields=["product", "kind"], name="shopreco_event_prod_idx"),
        ]

    def __str__(self) -> str:
        who = self.user_id or f"session {self.session_key[:8]}"
        return f"{who} {self.kind} {self.product_id}"


def distinct_shoppers() -> models.Expression:
    """An aggregate for a group of events: how many shoppers stand behind it, each signed-in
    shopper once and each anonymous session ``ANONYMOUS_WEIGHT`` times, however many rows
    either wrote. Popularity and trending group events by product, kind and day and count
    with this instead of rows, so replaying events buys nothing and opening sessions little.
    Rows with neither (the host's ``track`` without a request) weigh as a session each:
    there is nobody to count once, and no client can write them."""
    anonymous = Q(user__isnull=True)
    users = Count("user", distinct=True)
    sessions = Count("session_key", distinct=True, filter=anonymous & ~Q(session_key=""))
    nameless = Count("pk", filter=anonymous & Q(session_key=""))
    weight = Value(float(reco_settings.ANONYMOUS_WEIGHT), output_field=FloatField())
    return Cast(users, FloatField()) + weight * Cast(sessions + nameless, FloatField())


class RecomputeRun(models.Model):
    """One recompute (or evaluation, or the lists of an experiment's arm).

    Serving reads the run of the latest :class:`Deployment`, not "the newest run": a run that
    fails the holdout gate is ``rejected`` and never goes live by itself, and staff can go
    back to any kept run."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        REJECTED = "rejected", _("Rejected")
        FAILED = "failed", _("Failed")

    class Kind(models.TextChoices):
        FULL = "full", _("Full recompute")
        EVALUATION = "evaluation", _("Offline evaluation")
        ARM = "arm", _("Experiment arm")

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FULL)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    algorithm = models.CharField(max_length=64, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    stage = models.CharField(max_length=64, blank=True, default="")
    progress = models.FloatField(default=0.0, help_text=_("Percent done, 0 to 100."))
    counts = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    snapshot = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["kind", "status", "-finished_at"], name="shopreco_run_serve_idx")
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} ({self.kind}, {self.status})"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @classmethod
    def live(cls) -> RecomputeRun | None:
        """The run that serving reads: the run of the latest deployment."""
        deployment = Deployment.objects.select_related("run").order_by("-pk").first()
        return deployment.run if deployment is not None else None

    @classmethod
    def latest_succeeded(cls) -> RecomputeRun | None:
        """The run being served (:meth:`live`); the name is kept for callers from before
        runs were deployed explicitly, when the newest succeeded run was always live."""
        return cls.live()

    @property
    def config(self) -> dict:
        """The candidate configuration the run was fitted with (see ``CANDIDATES``)."""
        return dict((self.params or {}).get("config") or {})


class Deployment(models.Model):
    """One activation of a run: the latest row is the run every list is served from.

    A run that passes the holdout gate is deployed by the pipeline; staff deploy any kept run
    by hand (rollback, or a rejected run activated anyway). The rows are the history of what
    was live when, and who switched it."""

    run = models.ForeignKey(RecomputeRun, on_delete=models.CASCADE, related_name="deployments")
    activated_at = models.DateTimeField(default=timezone.now)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    note = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"Run #{self.run_id} live since {self.activated_at:%Y-%m-%d %H:%M}"


class ItemSimilarity(models.Model):
    """A product's neighbours in one run: "you may also like" (``similar``) or
    "customers who bought this also bought" (``also_bought``, from co-purchases)."""

    class Kind(models.TextChoices):
        SIMILAR = "similar", _("Similar")
        ALSO_BOUGHT = "also_bought", _("Also bought")

    # Result rows carry no database FK constraints (``db_constraint=False``): checking them
    # for every COPY'd row at commit took longer than the COPY itself. Django still cascades
    # deletes of products and runs; rows of a product deleted while a run computed are
    # removed at activation (``runs.drop_orphans``), and serving only reads available products.
    # No run index of its own: the serving index starts with run and covers deletes by run.
    run = models.ForeignKey(
        RecomputeRun, on_delete=models.CASCADE, related_name="similarities", db_index=False,
        db_constraint=False,
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SIMILAR)
    product = models.ForeignKey(
        settings.SHOPRECO_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+",
        db_constraint=False,
    )
    # No index either: no serving query looks rows up by neighbour, and its random-order
    # inserts were a large share of the similarity COPY (bench/bench_pipeline.py).
    # The price: deleting a product scans the table for its neighbour rows (the cascade),
    # linear in the table's rows, paid on a delete rather than on every recompute.
    similar_product = models.ForeignKey(
        settings.SHOPRECO_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+",
        db_constraint=False, db_index=False,
    )
    score = models.FloatField()

    class Meta:
        verbose_name_plural = "item similarities"
        indexes = [
            models.Index(
                fields=["run", "kind", "product", "-score"], name="shopreco_sim_serve_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.product_id} ~ {self.similar_product_id}: {self.score:.3f}"


# The two event kinds shopreco itself names: a product page view (recorded by
# ``mark_viewed``; a recommendation's click when it carries a recommendation id), and the
# cart, the one kind with an explanation of its own ("Because you added X to your cart").
# Every kind's weight, these included, comes from EVENT_WEIGHTS; OWNED_EVENT_KINDS say which
# kinds mean "bought".
VIEW_KIND = "view"
CART_KIND = "cart"


class Reason(models.TextChoices):
    """Why a product is on a list: one code per sentence shown to shoppers.

    The pipeline stores the first four on personal rows (the shopper's own activity that led
    there); serving adds the others. The API's ``reason_kind`` is :attr:`kind`."""

    RATED = "rated", _("Rated")
    BOUGHT = "bought", _("Bought")
    CARTED = "carted", _("Carted")
    VIEWED = "viewed", _("Viewed")
    ALSO_BOUGHT = "also_bought", _("Also bought")
    SIMILAR = "similar", _("Similar")
    POPULAR = "popular", _("Popular")
    TRENDING = "trending", _("Trending")
    NEW = "new", _("New")
    CATALOGUE = "catalogue", _("From the range")

    @classmethod
    def activity(cls) -> tuple[Reason, ...]:
        """The codes that name the shopper's own activity, strongest first."""
        return (cls.RATED, cls.BOUGHT, cls.CARTED, cls.VIEWED)

    @classmethod
    def for_event(cls, kind: str) -> Reason:
        """The reason an event of ``kind`` gives: a rating "rated", an owned kind
        (``OWNED_EVENT_KINDS``) "bought", a cart "carted", any other kind of
        ``EVENT_WEIGHTS`` (a view, a wishlist) "viewed"."""
        if kind == "rating":
            return cls.RATED
        if kind in reco_settings.OWNED_EVENT_KINDS:
            return cls.BOUGHT
        return cls.CARTED if kind == CART_KIND else cls.VIEWED

    @property
    def kind(self) -> str:
        """The coarser code the API reports (a new product is trending, a catalogue fill
        popular)."""
        return {"new": "trending", "catalogue": "popular"}.get(self.value, self.value)


class Recommendation(models.Model):
    """A precomputed personal recommendation of one run, with the reason shown to the user."""

    # No database FK constraints to run, user and products, as on ItemSimilarity (see there):
    # Django still cascades user deletes, erasure deletes a user's rows explicitly
    # (shopreco.privacy), and rows of users deleted mid-run are dropped at activation.
    run = models.ForeignKey(  # indexed by the serving index (run, user, rank)
        RecomputeRun, on_delete=models.CASCADE, related_name="recommendations", db_index=False,
        db_constraint=False,
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shopreco_recommendations",
        db_constraint=False,
    )
    product = models.ForeignKey(
        settings.SHOPRECO_PRODUCT_MODEL, on_delete=models.CASCADE, related_name="+",
        db_constraint=False,
    )
    score = models.FloatField()
    rank = models.PositiveIntegerField()
    reason = models.CharField(max_length=255, blank=True, default="")
    reason_product = models.ForeignKey(
        settings.SHOPRECO_PRODUCT_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["run", "user", "rank"], name="shopreco_rec_serve_idx")]

    def __str__(self) -> str:
        return f"#{self.rank} for {self.user_id}: {self.product_id}"


class Preference(models.Model):
    """Per-user privacy choices: personalisation and event tracking can be switched off."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shopreco_preference"
    )
    personalize = models.BooleanField(
        default=True, help_text=_("Use my activity to personalise recommendations.")
    )
    updated_at = models.DateTimeField(auto_now=True)
    # When the user last erased their data: a full run that read the data before then must
    # not publish a list of them (see ``runs.activate``).
    data_erased_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.user_id}: personalize={self.personalize}"


class PendingRefresh(models.Model):
    """Outbox of per-user refreshes: written in the same transaction as the rating or event, so
    no refresh is lost while the broker is down; a task drains it once the broker is back."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"refresh {self.user_id} since {self.requested_at:%Y-%m-%d %H:%M:%S}"


class Impression(models.Model):
    """One served list (widget render or API response), keyed by its recommendation id, so
    clicks and purchases that carry the id can be credited to the widget that showed them."""

    recommendation_id = models.CharField(max_length=64, unique=True, default=new_recommendation_id)
    widget = models.CharField(max_length=32, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="shopreco_impressions",
    )
    session_key = models.CharField(max_length=64, blank=True, default="")
    products = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The experiment arm the shopper was in when the list was served (None: no experiment).
    arm = models.ForeignKey(
        "ExperimentArm", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
    )

    def __str__(self) -> str:
        return f"{self.widget} {self.recommendation_id}"


def new_salt() -> str:
    return uuid.uuid4().hex[:16]


class Experiment(models.Model):
    """An A/B test: shoppers are split between arms by traffic share, each arm served from
    its own run, and insights compare what the arms' lists led to."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        RUNNING = "running", _("Running")
        STOPPED = "stopped", _("Stopped")

    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT,
                              db_index=True)
    # Seeds the draw, so two experiments split the same shoppers independently.
    salt = models.CharField(max_length=32, default=new_salt, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    promoted_arm = models.ForeignKey(
        "ExperimentArm", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        editable=False,
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class ExperimentArm(models.Model):
    """One arm: the live run (no configuration, no pinned run), a pinned run, or a candidate
    configuration whose lists every full run computes."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    name = models.CharField(max_length=64)
    share = models.PositiveIntegerField(
        default=50, help_text=_("Relative traffic share (weights, need not sum to 100)."))
    config = models.JSONField(
        default=dict, blank=True,
        help_text=_('A candidate configuration, e.g. {"algorithm": "item", "k": 50}; '
                    "empty with no pinned run: the live run."))
    pinned_run = models.ForeignKey(
        RecomputeRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        limit_choices_to={"status": RecomputeRun.Status.SUCCEEDED},
    )
    # The latest run computed for ``config`` (set by the pipeline).
    run = models.ForeignKey(
        RecomputeRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        editable=False,
    )

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["experiment", "name"],
                                               name="shopreco_arm_unique_name")]

    def __str__(self) -> str:
        return f"{self.experiment.name}: {self.name}"


class Assignment(models.Model):
    """A shopper's arm, drawn once: by user when signed in, else by the anonymous id that
    survives sign-in (a user without an arm adopts their session's)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE,
                                   related_name="assignments")
    arm = models.ForeignKey(ExperimentArm, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True,
                             blank=True, related_name="+")
    visitor = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "user"],
                                    condition=Q(user__isnull=False),
                                    name="shopreco_assignment_user"),
            models.UniqueConstraint(fields=["experiment", "visitor"],
                                    condition=~Q(visitor=""),
                                    name="shopreco_assignment_visitor"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id or self.visitor} -> {self.arm_id}"
