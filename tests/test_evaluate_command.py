"""shopreco_evaluate: cross-validation from a file or the shop's data, stored as a run."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from shopreco.models import Rating, RecomputeRun


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
    call_command("shopreco_evaluate", ratings=str(f), format="movielens", folds=3, k=5,
                 json=True, stdout=out)
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
    call_command("shopreco_evaluate", ratings=str(f), algorithm="user", folds=2, stdout=out)
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
    call_command("shopreco_evaluate", folds=2, k=3, json=True, stdout=out)
    m = json.loads(out.getvalue())["metrics"]
    assert m["category_coverage"] is not None and 0 < m["category_coverage"] <= 1
    assert np.isfinite(m["rmse"])


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
