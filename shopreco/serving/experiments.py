"""A/B experiments in serving: which experiments run, a shopper's arm, and the run it serves.

A shopper's arm is drawn once and stored (:class:`~shopreco.models.Assignment`): keyed by
user when signed in, else by the anonymous id that survives sign-in, and adopted by the user
at sign-in (:func:`adopt`). The draw is weighted by the arms' shares and deterministic in
(experiment salt, shopper id), so it can be reproduced; the stored row is what counts, so a
later change of shares moves nobody already assigned.

Who is enrolled (not opted out, no Sec-GPC, a session to key an anonymous shopper by) is
decided by :mod:`shopreco.serving.request`, which passes the shopper's id here: this module
knows nothing of requests. "Which experiments run" is cached (:mod:`shopreco.cache`), so a
shop with none running pays no query for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from shopreco import cache
from shopreco.models import Assignment, Experiment, ExperimentArm


@dataclass(frozen=True)
class RunningArm:
    id: int
    experiment_id: int
    share: int
    run_id: int | None  # the run the arm serves; None: the live run


@dataclass(frozen=True)
class RunningExperiment:
    id: int
    salt: str
    arms: tuple[RunningArm, ...]

    def arm(self, arm_id: int) -> RunningArm | None:
        return next((a for a in self.arms if a.id == arm_id), None)


def load_running() -> list[dict[str, Any]]:
    """The running experiments from the database (one query), oldest started first, in the
    plain form the cache keeps: ``[{"id", "salt", "arms": [[arm, share, run], ...]}]``. An
    arm's run: its pinned run, else the run computed for its configuration, else None (the
    live run: a control arm, or a configuration whose run is not computed yet)."""
    rows = (
        ExperimentArm.objects.filter(experiment__status=Experiment.Status.RUNNING)
        .order_by("experiment__started_at", "experiment_id", "pk")
        .values_list("experiment_id", "experiment__salt", "pk", "share", "pinned_run_id",
                     "run_id")
    )
    out: dict[int, dict[str, Any]] = {}
    for exp_id, salt, arm_id, share, pinned, computed in rows:
        entry = out.setdefault(exp_id, {"id": exp_id, "salt": salt, "arms": []})
        entry["arms"].append([arm_id, share, pinned if pinned is not None else computed])
    return list(out.values())


def as_running(raw: list[dict[str, Any]] | None) -> list[RunningExperiment]:
    return [
        RunningExperiment(e["id"], e["salt"], tuple(
            RunningArm(arm, e["id"], share, run) for arm, share, run in e["arms"]))
        for e in raw or ()
    ]


def running(raw: list[dict[str, Any]] | None = None) -> list[RunningExperiment]:
    """The running experiments: ``raw`` (as read from the cache), else the cache, else the
    database (then cached until an experiment, an arm or a run changes)."""
    if raw is None:
        raw = cache.running_experiments()
    if raw is None:
        raw = load_running()
        cache.remember_running_experiments(raw)
    return as_running(raw)


def shopper_id(user_pk: Any = None, visitor: str = "") -> str:
    """The id the draw hashes: a user's or an anonymous visitor's, never the same string."""
    return f"user:{user_pk}" if user_pk is not None else f"visitor:{visitor}"


def draw(salt: str, shopper: str, arms: tuple[RunningArm, ...] | list[RunningArm]
         ) -> RunningArm | None:
    """The arm of ``shopper``, weighted by share: a point in [0, 1) from SHA-256 of
    (salt, shopper), so the same shopper always draws the same arm while the shares stand,
    and two experiments (two salts) split shoppers independently. None: every share is 0."""
    total = sum(max(0, a.share) for a in arms)
    if total <= 0:
        return None
    digest = hashlib.sha256(f"{salt}:{shopper}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2.0**64 * total
    upto = 0.0
    chosen = None
    for arm in arms:
        if arm.share <= 0:
            continue
        chosen = arm
        upto += arm.share
        if point < upto:
            break
    return chosen


def _who(user_pk: Any, visitor: str) -> dict[str, Any]:
    return {"user_id": user_pk} if user_pk is not None else {"user__isnull": True,
                                                            "visitor": visitor}


def assign(experiments: list[RunningExperiment], user_pk: Any = None, visitor: str = ""
           ) -> RunningArm | None:
    """The shopper's arm in the first running experiment that has one for them (one query to
    read the stored arms; a draw stored for each experiment they have none in yet). Enrolment
    is for the caller to decide: pass a user pk or an anonymous visitor id, never neither."""
    if not experiments or (user_pk is None and not visitor):
        return None
    stored = dict(
        Assignment.objects.filter(experiment_id__in=[e.id for e in experiments],
                                  **_who(user_pk, visitor))
        .values_list("experiment_id", "arm_id")
    )
    for experiment in experiments:
        arm_id = stored.get(experiment.id)
        if arm_id is None:
            arm_id = _store(experiment, user_pk, visitor)
        arm = experiment.arm(arm_id) if arm_id is not None else None
        if arm is not None:
            return arm
    return None


def _store(experiment: RunningExperiment, user_pk: Any, visitor: str) -> int | None:
    """Draw and store the shopper's arm; a request that raced us stored one first: theirs."""
    arm = draw(experiment.salt, shopper_id(user_pk, visitor), experiment.arms)
    if arm is None:
        return None
    try:
        with transaction.atomic():
            Assignment.objects.create(
                experiment_id=experiment.id, arm_id=arm.id, user_id=user_pk,
                visitor="" if user_pk is not None else visitor)
    except IntegrityError:  # the unique constraints: someone else's row stands
        return (Assignment.objects.filter(experiment_id=experiment.id, **_who(user_pk, visitor))
                .values_list("arm_id", flat=True).first())
    return arm.id


def adopt(user_pk: Any, visitor: str) -> int:
    """At sign-in: in each running experiment where the user has no arm, the arm their
    anonymous id was in becomes theirs (the stored row gains the user). Returns how many
    arms were adopted."""
    if user_pk is None or not visitor:
        return 0
    ids = [e.id for e in running()]
    if not ids:
        return 0
    have = set(Assignment.objects.filter(experiment_id__in=ids, user_id=user_pk)
               .values_list("experiment_id", flat=True))
    adopted = 0
    for exp_id in ids:
        if exp_id in have:
            continue
        try:
            with transaction.atomic():
                adopted += Assignment.objects.filter(
                    experiment_id=exp_id, user__isnull=True, visitor=visitor,
                ).update(user_id=user_pk)
        except IntegrityError:  # the user was assigned meanwhile (another request)
            continue
    return adopted
