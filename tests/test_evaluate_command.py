"""shopreco_evaluate: the served lists on held-out data (holdout, temporal, next-item) and
rating-prediction cross-validation, from a file or the shop's data, stored as a run."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from shopreco.models import Deployment, Rating, RecomputeRun


def _write_ratings(path, n_users=30, n_items=15, seed=0, header=True):
    rng = np.random.default_rng(seed)
    lines = ["userId,movieId,rating,timestamp"] if header else []
    for u in range(n_users):
        for i in rng.choice(n_items, size=6, replace=False):
            lines.append(f"u{u},m{i},{rng.integers(1, 6)},{1000 + u * 10 + i}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.django_db
def test_file_json_and_stored_run(tmp_path):
    f = _write_ratings(tmp_path / "r.csv")
    out = StringIO()
    call_command("shopreco_evaluate", ratings=str(f), format="movielens", protocol="cv",
                 folds=3, k=5, json=True, stdout=out)
    data = json.loads(out.getvalue())
    m = data["metrics"]
    assert 0 < m["rmse"] < 4 and 0 <= m["precision@5"] <= 1
    assert data["counts"] == {"n_users": 30, "n_items": 15, "n_ratings": 180}
    assert len(data["folds"]) == 3
    run = RecomputeRun.objects.get(pk=data["run"])
    assert run.kind == RecomputeRun.Kind.EVALUATION
    assert run.status == RecomputeRun.Status.SUCCEEDED
    assert run.metrics["rmse"] == pytest.approx(m["rmse"])
    assert run.timings["total_fit_time"] >= 0
    assert run.params["folds"] == 3


@pytest.mark.django_db
def test_table_output_user_algorithm(tmp_path):
    f = _write_ratings(tmp_path / "r.csv", header=False)
    out = StringIO()
    call_command("shopreco_evaluate", ratings=str(f), algorithm="user", protocol="cv",
                 folds=2, stdout=out)
    text = out.getvalue()
    assert "UserKNN" in text and "ndcg@10" in text and "gini" in text
    assert RecomputeRun.objects.filter(kind="evaluation", algorithm="UserKNN").count() == 1


@pytest.mark.django_db
def test_bad_file_names_the_line(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("user,item,rating\n1,2,4\n1,3,lots\n")
    with pytest.raises(CommandError, match="line 3"):
        call_command("shopreco_evaluate", ratings=str(f))
    with pytest.raises(CommandError, match="no such file"):
        call_command("shopreco_evaluate", ratings=str(tmp_path / "missing.csv"))
    empty = tmp_path / "empty.csv"
    empty.write_text("user,item,rating\n")
    with pytest.raises(CommandError, match="no ratings found"):
        call_command("shopreco_evaluate", ratings=str(empty))


@pytest.mark.django_db
def test_movielens_layouts_are_the_importers(tmp_path):
    """--format movielens reads what shopreco_import reads: a directory, the 1M ``::``
    layout, and its bad rows name their line."""
    rng = np.random.default_rng(2)
    ml = tmp_path / "ml-1m"
    ml.mkdir()
    rows = [f"{u}::{i}::{rng.integers(1, 6)}::{1000 + u * 10 + i}"
            for u in range(20) for i in rng.choice(12, size=5, replace=False)]
    (ml / "ratings.dat").write_text("\n".join(rows) + "\n")
    out = StringIO()
    call_command("shopreco_evaluate", ratings=str(ml), format="movielens", protocol="temporal",
                 k=3, json=True, stdout=out)
    assert json.loads(out.getvalue())["counts"]["evaluated_users"] == 20
    (ml / "ratings.dat").write_text("\n".join(rows[:3] + ["7::3::4"]) + "\n")
    with pytest.raises(CommandError, match="line 4: expected 4 fields, found 3"):
        call_command("shopreco_evaluate", ratings=str(ml), format="movielens")


@pytest.mark.django_db
def test_shop_data_with_category_coverage(user_factory, product_factory, category_factory):
    rng = np.random.default_rng(1)
    cats = [category_factory() for _ in range(3)]
    products = [product_factory(category=cats[i % 3]) for i in range(12)]
    users = [user_factory() for _ in range(20)]
    for u in users:
        for p in rng.choice(len(products), size=5, replace=False):
            Rating.objects.create(user=u, product=products[p], score=float(rng.integers(1, 6)))
    out = StringIO()
    call_command("shopreco_evaluate", protocol="cv", folds=2, k=3, json=True, stdout=out)
    m = json.loads(out.getvalue())["metrics"]
    assert m["category_coverage"] is not None and 0 < m["category_coverage"] <= 1
    assert np.isfinite(m["rmse"])
    out = StringIO()
    call_command("shopreco_evaluate", k=3, json=True, stdout=out)  # the served lists
    m = json.loads(out.getvalue())["metrics"]
    assert m["category_coverage"] is not None and 0 < m["category_coverage"] <= 1
    assert "rmse" not in m and 0 <= m["precision@3"] <= 1


@pytest.mark.django_db
def test_empty_shop_is_a_clear_error():
    with pytest.raises(CommandError, match="not enough data"):
        call_command("shopreco_evaluate")


@pytest.mark.django_db
def test_explanation_shares_of_the_served_run(user_factory, product_factory):
    from django.utils import timezone

    from shopreco.models import Recommendation

    products = [product_factory() for _ in range(6)]
    users = [user_factory() for _ in range(4)]
    for u in users:
        for p in products[:4]:
            Rating.objects.create(user=u, product=p, score=3.0 + (p.pk + u.pk) % 3)
    served = RecomputeRun.objects.create(status="succeeded", finished_at=timezone.now())
    Deployment.objects.create(run=served)
    stale = RecomputeRun.objects.create(status="failed", finished_at=timezone.now())
    # Served run: top-2 of user 0 is (rated, bought), of user 1 (rated, no reason); rank 3 is
    # outside k=2 and the failed run's rows are never counted.
    for user, rank, reason in [(users[0], 1, "rated"), (users[0], 2, "bought"),
                               (users[1], 1, "rated"), (users[1], 2, ""),
                               (users[0], 3, "viewed")]:
        Recommendation.objects.create(run=served, user=user, product=products[3 + rank % 3],
                                      score=1.0, rank=rank, reason=reason)
    Recommendation.objects.create(run=stale, user=users[2], product=products[5], score=1.0,
                                  rank=1, reason="viewed")
    out = StringIO()
    call_command("shopreco_evaluate", folds=2, k=2, json=True, stdout=out)
    shares = json.loads(out.getvalue())["metrics"]["explanations"]
    assert shares == {"bought": 0.25, "none": 0.25, "rated": 0.5}
    table = StringIO()
    call_command("shopreco_evaluate", folds=2, k=2, stdout=table)
    assert "rated" in table.getvalue() and "50.0%" in table.getvalue()


def _planted_shop(user_factory, product_factory, n_users=24, seed=3):
    """Two taste groups over 16 products, each shopper rating 5 of their group's 8 in a
    random order: held-out products are in the shopper's group."""
    from datetime import timedelta

    from django.utils import timezone

    rng = np.random.default_rng(seed)
    products = [product_factory() for _ in range(16)]
    users = [user_factory() for _ in range(n_users)]
    t0 = timezone.now() - timedelta(days=30)
    for n, u in enumerate(users):
        group = products[:8] if n % 2 == 0 else products[8:]
        for hour, j in enumerate(rng.choice(8, size=5, replace=False)):
            r = Rating.objects.create(user=u, product=group[j], score=4.0)
            Rating.objects.filter(pk=r.pk).update(updated_at=t0 + timedelta(hours=hour))
    return users, products


@pytest.mark.django_db
@pytest.mark.parametrize("protocol", ["holdout", "temporal", "next-item"])
@pytest.mark.parametrize("algorithm", ["ease", "item", "user"])
def test_served_lists_find_the_planted_tastes(protocol, algorithm, user_factory,
                                             product_factory):
    """Each protocol on the served path: the lists (computed by the pipeline's functions)
    find held-out products of the shopper's own group far above chance, and the figures
    are stored on an evaluation run."""
    _planted_shop(user_factory, product_factory)
    out = StringIO()
    # personal lists: 3 of the 11 products not owned (chance ~0.3 hit rate, ~0.7 if in the
    # group); similar lists: 5 of the other 15 (chance 0.33, 0.71 if in the group)
    k = 5 if protocol == "next-item" else 3
    call_command("shopreco_evaluate", protocol=protocol, algorithm=algorithm, k=k,
                 json=True, stdout=out)
    data = json.loads(out.getvalue())
    m = data["metrics"]
    assert data["counts"]["evaluated_users"] > 0
    assert m[f"hit_rate@{k}"] >= 0.55, m
    if protocol != "next-item":
        assert m["precision@3"] > 0.3 and 0 < m["coverage"] <= 1 and 0 <= m["gini"] <= 1
        assert m["novelty"] > 0
    run = RecomputeRun.objects.get(pk=data["run"])
    assert run.status == "succeeded" and run.algorithm == f"served:{algorithm}"
    assert run.params["protocol"] == protocol and run.params["algorithm"] == algorithm
    assert run.metrics[f"hit_rate@{k}"] == pytest.approx(m[f"hit_rate@{k}"])


@pytest.mark.django_db
def test_served_protocols_from_a_file_need_timestamps_for_time(tmp_path):
    f = _write_ratings(tmp_path / "r.csv")
    out = StringIO()
    call_command("shopreco_evaluate", ratings=str(f), protocol="temporal", k=5, json=True,
                 stdout=out)
    data = json.loads(out.getvalue())
    assert data["counts"]["evaluated_users"] == 30  # everyone has 6 > 1 ratings
    assert data["counts"]["held_out"] == 30
    no_time = tmp_path / "nt.csv"
    no_time.write_text("u1,m1,4\nu1,m2,3\nu2,m1,5\nu2,m3,2\nu3,m2,4\nu3,m3,1\n")
    with pytest.raises(CommandError, match="timestamp"):
        call_command("shopreco_evaluate", ratings=str(no_time), protocol="next-item")
    with pytest.raises(CommandError, match="rating prediction"):
        call_command("shopreco_evaluate", ratings=str(f), protocol="cv", algorithm="ease")
    with pytest.raises(CommandError, match="test-fraction"):
        call_command("shopreco_evaluate", ratings=str(f), test_fraction=1.5)
