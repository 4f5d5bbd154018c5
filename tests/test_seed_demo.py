"""seed_demo: a believable shop, the same for the same seed, with tastes a recommender can find;
demo_admin: the logins ``make demo`` prints."""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from demo_shop.catalog.management.commands.seed_demo import generate
from demo_shop.catalog.models import Category, Product
from shopreco.models import Interaction, Rating


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    """The seeded data with database ids replaced by SKUs/usernames and times made relative."""
    latest = max(Interaction.objects.latest("created_at").created_at,
                 Rating.objects.latest("created_at").created_at)
    return {
        "categories": sorted(Category.objects.values_list("name", "slug")),
        "products": sorted(Product.objects.values_list(
            "external_id", "name", "category__name", "price", "image_color", "in_stock",
            "is_active", "description")),
        "users": sorted(get_user_model().objects.values_list("username", "first_name")),
        "ratings": sorted(
            (u, p, s, (latest - t).total_seconds()) for u, p, s, t in Rating.objects.values_list(
                "user__username", "product__external_id", "score", "created_at")),
        "events": sorted(
            (u, p, k, (latest - t).total_seconds()) for u, p, k, t in
            Interaction.objects.values_list("user__username", "product__external_id", "kind",
                                            "created_at")),
    }


@pytest.mark.django_db
def test_default_seed_is_a_believable_shop():
    before = timezone.now()
    seed()
    assert Category.objects.count() >= 10
    assert Product.objects.count() >= 500
    per_category = Product.objects.values("category").distinct().count()
    assert per_category == Category.objects.count()  # no empty category
    names = list(Product.objects.values_list("name", flat=True))
    assert len(set(names)) == len(names)
    assert all(len(n.split()) >= 3 for n in names)  # "Brand Material Thing", not "Product 7"
    prices = [float(p) for p in Product.objects.values_list("price", flat=True)]
    assert min(prices) > 0 and max(prices) < 1000 and len(set(prices)) > 100
    assert Product.objects.filter(in_stock=False).exists()
    assert Product.objects.filter(is_active=False).exists()
    assert Product.objects.filter(in_stock=True, is_active=True).count() > 0.9 * len(names)
    assert len(set(Product.objects.values_list("image_color", flat=True))) > 100

    customers = get_user_model().objects.filter(username__startswith="customer")
    assert customers.count() >= 300
    assert customers.filter(username="customer001").exists()
    first = customers.get(username="customer001")
    assert first.first_name and first.check_password("demo")

    assert Rating.objects.count() >= 3000
    assert set(Rating.objects.values_list("score", flat=True)) == {1, 2, 3, 4, 5}
    assert Interaction.objects.count() >= 5000
    kinds = set(Interaction.objects.values_list("kind", flat=True))
    assert kinds == {"view", "cart", "purchase"}
    after = timezone.now()
    for model in (Rating, Interaction):
        oldest = model.objects.earliest("created_at").created_at
        newest = model.objects.latest("created_at").created_at
        assert before - timedelta(days=91) < oldest and newest <= after
        assert newest - oldest > timedelta(days=60)  # spread over the period, not one instant
    # Every customer did something; a purchase follows a cart of the same product.
    assert Interaction.objects.values("user").distinct().count() == customers.count()
    carts = set(Interaction.objects.filter(kind="cart").values_list("user", "product"))
    buys = set(Interaction.objects.filter(kind="purchase").values_list("user", "product"))
    assert buys and buys <= carts


@pytest.mark.django_db
def test_same_seed_same_shop_and_other_seed_other_shop():
    small = ("--customers", "25", "--products", "60")
    seed("--seed", "7", *small)
    first = snapshot()
    seed("--flush", "--seed", "7", *small)
    assert snapshot() == first
    seed("--flush", "--seed", "8", *small)
    other = snapshot()
    assert other["products"] != first["products"] and other["ratings"] != first["ratings"]
    assert len(other["products"]) == 60 and len(other["users"]) == 25


@pytest.mark.django_db
def test_if_empty_keeps_existing_data_and_refuses_to_seed_twice():
    seed("--customers", "5", "--products", "24")
    products = set(Product.objects.values_list("pk", flat=True))
    assert "nothing to seed" in seed("--if-empty")
    assert set(Product.objects.values_list("pk", flat=True)) == products
    with pytest.raises(CommandError, match="not empty"):
        seed("--customers", "5", "--products", "24")
    with pytest.raises(CommandError, match="--products"):
        seed("--flush", "--products", "3")


def test_tastes_follow_category_and_price_preferences():
    data = generate(seed=3, n_customers=200, n_products=600)
    cat = np.array([p[2] for p in data.products])
    # Price level of each product within its category (0 cheapest .. 1 dearest).
    level = np.zeros(len(data.products))
    for c in set(cat.tolist()):
        idx = np.flatnonzero(cat == c)
        prices = np.array([float(data.products[i][3]) for i in idx])
        level[idx] = prices.argsort().argsort() / max(len(idx) - 1, 1)

    # Categories: customers concentrate on a few, and rate those higher than the rest.
    events = defaultdict(list)
    for u, p, _kind, _t in data.events:
        events[u].append(p)
    top_share, fav, other = [], [], []
    for u, products in events.items():
        counts = np.bincount(cat[products], minlength=len(data.categories))
        top3 = set(np.argsort(counts)[-3:].tolist())
        top_share.append(counts[list(top3)].sum() / counts.sum())
        for uu, p, score, _ in data.ratings:
            if uu == u:
                (fav if cat[p] in top3 else other).append(score)
    assert np.mean(top_share) > 0.6  # 3 of 12 categories would be 0.25 without tastes
    assert np.mean(fav) > np.mean(other) + 0.5

    # Price bands: a customer's purchases in two random halves agree on the price level.
    rng = np.random.default_rng(0)
    halves = []
    for u in range(len(data.customers)):
        bought = [p for uu, p, kind, _ in data.events if uu == u and kind == "purchase"]
        if len(bought) >= 4:
            rng.shuffle(bought)
            mid = len(bought) // 2
            halves.append((level[bought[:mid]].mean(), level[bought[mid:]].mean()))
    a, b = np.array(halves).T
    assert len(halves) > 50 and np.corrcoef(a, b)[0, 1] > 0.3


@pytest.mark.django_db
def test_movielens_directory(tmp_path: Path):
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n'
        '2,"American President, The (1995)",Comedy|Drama|Romance\n3,Heat (1995),Action|Crime\n'
        "4,Unknown Film (2001),(no genres listed)\n", encoding="utf-8")
    (ml / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964982224\n"
        "2,3,5.0,964983815\n2,1,0.5,964982931\n", encoding="utf-8")
    out = seed("--movielens", str(ml))
    assert "4 ratings and 0 events kept" in out
    assert dict(Product.objects.values_list("external_id", "category__name")) == {
        "1": "Adventure", "2": "Comedy", "3": "Action", "4": "Other"}
    assert Product.objects.get(external_id="2").name == "American President, The (1995)"
    scores = dict(Rating.objects.filter(user__username="ext-1")
                  .values_list("product__external_id", "score"))
    assert scores == {"1": 4.0, "2": 4.0}  # half stars rounded into the shop's 1-5 scale
    assert get_user_model().objects.get(username="ext-2").check_password("demo")


@pytest.mark.django_db
def test_movielens_100k_layout(tmp_path: Path):
    (tmp_path / "u.item").write_bytes(
        "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
        "2|Cafe Expr\xe9s (1996)|01-Jan-1996||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
        .encode("latin-1"))
    (tmp_path / "u.data").write_text("196\t1\t3\t881250949\n186\t2\t5\t891717742\n")
    seed("--movielens", str(tmp_path))
    assert dict(Product.objects.values_list("name", "category__name")) == {
        "Toy Story (1995)": "Animation", "Cafe Exprés (1996)": "Drama"}
    assert Rating.objects.count() == 2


@pytest.mark.django_db
def test_movielens_1m_layout(tmp_path: Path):
    (tmp_path / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Caf\xe9 (1996)::Drama\n"
        .encode("latin-1"))
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978302109\n")
    seed("--movielens", str(tmp_path))
    assert dict(Product.objects.values_list("name", "category__name")) == {
        "Toy Story (1995)": "Animation", "Café (1996)": "Drama"}
    assert Rating.objects.count() == 2


@pytest.mark.django_db
def test_online_retail_csv(tmp_path: Path):
    path = tmp_path / "retail.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,UK\n"
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,UK\n"
        "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,UK\n"
        "C536379,71053,WHITE METAL LANTERN,-1,2010-12-01 09:41:00,3.39,14527.0,UK\n"
        "536380,22633,HAND WARMER UNION JACK,2,2010-12-01 09:45:00,1.85,14527.0,UK\n"
        "536381,POST,POSTAGE,1,2010-12-01 09:45:00,18.00,14527.0,UK\n",
        encoding="utf-8")
    out = seed("--online-retail", str(path))
    assert "0 ratings and 3 events kept" in out
    products = dict(Product.objects.values_list("external_id", "name"))
    assert products == {"85123A": "White Hanging Heart T-Light Holder",
                        "71053": "White Metal Lantern", "22633": "Hand Warmer Union Jack"}
    assert Product.objects.get(external_id="71053").category.name == "Candles & Lighting"
    assert str(Product.objects.get(external_id="22633").price) == "1.85"
    assert set(Interaction.objects.values_list("user__username", "product__external_id")) == {
        ("ext-17850", "85123A"), ("ext-17850", "71053"), ("ext-14527", "22633")}
    assert set(Interaction.objects.values_list("kind", flat=True)) == {"purchase"}


@pytest.mark.django_db
def test_broken_real_data_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CommandError, match="neither movies.csv, movies.dat nor u.item"):
        seed("--movielens", str(tmp_path))
    bad = tmp_path / "retail.csv"
    bad.write_text("InvoiceNo,StockCode\n1,2\n")
    with pytest.raises(CommandError, match="line 1: missing column"):
        seed("--online-retail", str(bad))
    assert not Product.objects.exists()


@pytest.mark.django_db
def test_demo_admin_prints_working_logins():
    seed("--customers", "5", "--products", "24")
    out = io.StringIO()
    call_command("demo_admin", "--port", "8123", stdout=out)
    text = out.getvalue()
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password("admin")
    assert "http://127.0.0.1:8123/admin/" in text and "password 'admin'" in text
    assert "customer 'customer001', password 'demo'" in text
    assert "customer 'customer002', password 'demo'" in text
    # Running it again keeps one admin and does not reset a changed password.
    admin.set_password("secret")
    admin.save()
    out = io.StringIO()
    call_command("demo_admin", stdout=out)
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert get_user_model().objects.get(username="admin").check_password("secret")
    assert "changed; not reset" in out.getvalue()


@pytest.mark.django_db
def test_output_counts_agree_with_their_nouns():
    """"1 customer", "1 rating": people read what make demo prints."""
    out = seed("--customers", "1", "--products", "12")
    assert "Seeded 12 categories, 12 products, 1 customer (password 'demo')" in out
    customer = get_user_model().objects.get(username="customer001")
    Rating.objects.filter(user=customer).exclude(
        pk=Rating.objects.filter(user=customer).values("pk")[:1]).delete()
    text = io.StringIO()
    call_command("demo_admin", stdout=text)
    assert "customer 'customer001', password 'demo' (1 rating)" in text.getvalue()


@pytest.mark.django_db
def test_real_data_import_reports_progress_on_stderr(tmp_path: Path, monkeypatch):
    """seed_demo --movielens goes through the importer; its progress lines go to stderr so a
    long load does not look hung (quick here: the printer is made to print every call)."""
    from shopreco import importing

    class Eager(importing.ProgressPrinter):
        def __init__(self, write, interval: float = 2.0) -> None:
            super().__init__(write, interval=0.0)

    monkeypatch.setattr(importing, "ProgressPrinter", Eager)
    monkeypatch.setattr(importing, "PROGRESS_EVERY", 2)
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n1,Alpha (1999),Drama\n2,Beta (2001),Comedy\n")
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(
            f"{u},{m},4,{1_000_000_000 + u * 10 + m}\n" for u in range(1, 4) for m in (1, 2)))
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", "--movielens", str(tmp_path), stdout=out, stderr=err)
    assert "6 rows read, 6 ratings" in out.getvalue()
    assert "rows read in" in err.getvalue() and "rows/s" in err.getvalue()
    err = io.StringIO()
    call_command("seed_demo", "--flush", "--movielens", str(tmp_path), verbosity=0,
                 stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == ""
