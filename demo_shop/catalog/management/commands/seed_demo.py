"""``manage.py seed_demo``: fill the demo shop with a believable, reproducible catalogue and
customers whose behaviour has structure a recommender can find.

Synthetic data (the default) is generated from word lists per category and a small latent
model of taste: every customer prefers two or three categories and a price band, every product
has a hidden quality, and views, carts, purchases and ratings follow from those plus noise.
The same ``--seed`` always gives the same shop (timestamps are offsets from the time of the
run). ``--movielens DIR`` and ``--online-retail CSV`` load real data instead: the catalogue
through the demo's own readers (:mod:`demo_shop.catalog.readers`), the ratings and purchases
through the same parsers as ``shopreco_import`` (``shopreco.importing``), so there is one
parser per format.
"""

from __future__ import annotations

import colorsys
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import ngettext

from demo_shop.catalog.models import Category, Product

DEMO_PASSWORD = "demo"
HISTORY_DAYS = 90
CUSTOMER_PREFIX = "customer"

# name -> (hue 0..1, brands, styles as (word, price multiplier), types as (noun, low, high), blurb)
CATALOGUE: dict[str, dict[str, Any]] = {
    "Knitwear": {
        "hue": 0.07,
        "brands": ["Hebridean", "Northwind", "Fjell & Co", "Aran Mill", "Loomcraft"],
        "styles": [("Merino Wool", 1.0), ("Cashmere", 2.2), ("Organic Cotton", 0.8),
                   ("Lambswool", 0.9), ("Alpaca", 1.6), ("Cable-Knit", 1.1)],
        "types": [("Crew Sweater", 45, 110), ("Cardigan", 50, 120), ("Roll-Neck Jumper", 55, 130),
                  ("V-Neck Jumper", 40, 100), ("Knitted Beanie", 15, 40), ("Zip Hoodie", 45, 95)],
        "blurb": "Soft, warm and made to last through many winters.",
    },
    "Footwear": {
        "hue": 0.09,
        "brands": ["Stridewell", "Oakfield", "Trailborn", "Cobbler & Sons", "Pace"],
        "styles": [("Leather", 1.3), ("Suede", 1.2), ("Waterproof", 1.15), ("Lightweight", 0.9),
                   ("Vegan", 1.0), ("Classic", 0.95)],
        "types": [("Running Shoes", 60, 160), ("Chelsea Boots", 90, 220), ("Loafers", 70, 180),
                  ("Trainers", 45, 120), ("Hiking Boots", 90, 230), ("Sandals", 25, 80)],
        "blurb": "Comfortable from the first step, with a sole built for daily wear.",
    },
    "Kitchen": {
        "hue": 0.0,
        "brands": ["Copperpot", "Hearth", "Maison Blanc", "Forge & Fire", "Saltbox"],
        "styles": [("Stainless Steel", 1.0), ("Enamelled", 1.3), ("Walnut", 1.2),
                   ("Carbon Steel", 1.1), ("Ceramic", 0.9), ("Cast Iron", 1.25)],
        "types": [("Chef's Knife", 35, 160), ("Skillet", 30, 120), ("Saucepan", 25, 110),
                  ("Chopping Board", 15, 70), ("Dutch Oven", 60, 260), ("Mixing Bowl Set", 18, 60)],
        "blurb": "A kitchen workhorse that cooks evenly and cleans up easily.",
    },
    "Audio": {
        "hue": 0.62,
        "brands": ["Sonora", "Klangwerk", "Bassline", "Aurio", "Hushpoint"],
        "styles": [("Noise-Cancelling", 1.5), ("Portable", 0.8), ("Studio", 1.4),
                   ("Compact", 0.75), ("Hi-Fi", 1.6), ("Wireless", 1.0)],
        "types": [("Headphones", 40, 350), ("Bluetooth Speaker", 30, 250), ("Earbuds", 25, 220),
                  ("Turntable", 120, 450), ("Soundbar", 90, 400), ("Desktop Speakers", 60, 300)],
        "blurb": "Clear, balanced sound with deep bass and no fuss setup.",
    },
    "Books": {
        "hue": 0.12,
        "brands": ["Mediterranean", "Nordic", "Japanese", "Vegetarian", "Mountain", "Coastal"],
        "styles": [("Illustrated", 1.2), ("Pocket", 0.6), ("Hardback", 1.1), ("Collector's", 1.8),
                   ("Paperback", 0.7), ("Revised", 1.0)],
        "types": [("Cookbook", 15, 40), ("Field Guide", 10, 30), ("Walking Guide", 8, 25),
                  ("Atlas", 20, 55), ("Baking Book", 14, 35), ("Photo Book", 20, 60)],
        "blurb": "Beautifully written and a pleasure to leave open on the table.",
        "pattern": "{style} {brand} {type}",
    },
    "Outdoor": {
        "hue": 0.33,
        "brands": ["Ridgeline", "Cairn", "Wildfell", "Summit Supply", "Bivouac"],
        "styles": [("Ultralight", 1.5), ("Two-Person", 1.2), ("Expedition", 1.7), ("Alpine", 1.3),
                   ("Weatherproof", 1.1), ("Trail", 0.9)],
        "types": [("Tent", 90, 450), ("Sleeping Bag", 50, 300), ("Backpack", 40, 220),
                  ("Trekking Poles", 25, 120), ("Head Torch", 15, 70), ("Camping Stove", 30, 150)],
        "blurb": "Tested in wind and rain, packs small and sets up fast.",
    },
    "Home Decor": {
        "hue": 0.83,
        "brands": ["Linden House", "Atelier Nord", "Willow & Wren", "Casa Terra", "Moss"],
        "styles": [("Linen", 1.0), ("Ceramic", 1.1), ("Brass", 1.5), ("Rattan", 1.05),
                   ("Velvet", 1.2), ("Hand-Blown Glass", 1.4)],
        "types": [("Table Lamp", 35, 160), ("Throw Blanket", 30, 120), ("Cushion Cover", 12, 45),
                  ("Vase", 15, 90), ("Wall Clock", 25, 110), ("Candle Holder", 10, 50)],
        "blurb": "Brings warmth and character to any room.",
    },
    "Beauty": {
        "hue": 0.92,
        "brands": ["Botanica", "Pure Isle", "Rosewater Lab", "Kelp & Clay", "Luma"],
        "styles": [("Rosehip", 1.1), ("Lavender", 1.0), ("Vitamin C", 1.3), ("Unscented", 0.9),
                   ("Sea Salt", 0.95), ("Bergamot", 1.15)],
        "types": [("Face Serum", 15, 70), ("Hand Cream", 6, 25), ("Shampoo", 7, 28),
                  ("Lip Balm", 4, 14), ("Body Lotion", 9, 35), ("Eau de Parfum", 35, 120)],
        "blurb": "Gentle, natural ingredients and a fresh, clean scent.",
    },
    "Toys & Games": {
        "hue": 0.15,
        "brands": ["Tinker Town", "Meeple House", "Little Oak", "Brightside", "Puzzlewood"],
        "styles": [("Family", 1.0), ("Strategy", 1.2), ("1000-Piece", 0.9), ("Classic", 0.85),
                   ("Deluxe", 1.5), ("Wooden", 1.1)],
        "types": [("Board Game", 18, 60), ("Jigsaw Puzzle", 10, 30), ("Building Set", 15, 90),
                  ("Card Game", 8, 25), ("Train Set", 25, 110), ("Marble Run", 20, 70)],
        "blurb": "Hours of fun for players of every age.",
    },
    "Fitness": {
        "hue": 0.5,
        "brands": ["Corefit", "Ironbark", "Flowstate", "Kinetic", "Peak Form"],
        "styles": [("Non-Slip", 1.0), ("Adjustable", 1.4), ("Pro", 1.5), ("Travel", 0.8),
                   ("Eco Cork", 1.2), ("Heavy-Duty", 1.3)],
        "types": [("Yoga Mat", 15, 90), ("Kettlebell", 20, 110), ("Resistance Bands", 10, 40),
                  ("Foam Roller", 12, 45), ("Skipping Rope", 6, 30), ("Dumbbell Pair", 25, 160)],
        "blurb": "Built for daily training at home or in the gym.",
    },
    "Coffee & Tea": {
        "hue": 0.05,
        "brands": ["Ethiopian", "Colombian", "Darjeeling", "Kenyan", "Sumatran", "Yunnan"],
        "styles": [("Single-Origin", 1.3), ("Organic", 1.15), ("Small-Batch", 1.4),
                   ("Everyday", 0.8), ("Reserve", 1.8), ("Fairtrade", 1.1)],
        "types": [("Espresso Beans", 8, 30), ("Filter Coffee", 7, 25), ("Loose Leaf Tea", 6, 28),
                  ("Cold Brew Kit", 20, 60), ("Green Tea", 6, 24), ("Chai Blend", 6, 20)],
        "blurb": "Roasted and packed in small batches for a fresh cup every time.",
        "pattern": "{style} {brand} {type}",
    },
    "Garden": {
        "hue": 0.27,
        "brands": ["Greenthumb", "Potting Shed", "Bramble", "Verdant", "Orchard Lane"],
        "styles": [("Bypass", 1.0), ("Galvanised", 1.1), ("Cedar", 1.4), ("Heritage", 1.3),
                   ("Compact", 0.8), ("Ergonomic", 1.15)],
        "types": [("Pruning Shears", 12, 60), ("Watering Can", 12, 55), ("Raised Bed", 45, 220),
                  ("Seed Collection", 6, 25), ("Garden Gloves", 8, 30), ("Hose Reel", 25, 110)],
        "blurb": "Sturdy, practical and a joy to use from spring to autumn.",
    },
}

COLOURS = ["Navy", "Charcoal", "Oatmeal", "Forest Green", "Rust", "Sand", "Slate", "Burgundy",
           "Ivory", "Ochre"]
FIRST_NAMES = [
    "Olivia", "Liam", "Amelia", "Noah", "Isla", "Oliver", "Ava", "Leo", "Mia", "Arthur", "Freya",
    "Theo", "Lily", "Oscar", "Grace", "Harry", "Ella", "George", "Sophia", "Jack", "Aisha", "Omar",
    "Priya", "Arjun", "Mei", "Hiroshi", "Sofia", "Mateo", "Chloe", "Lucas", "Zara", "Ibrahim",
    "Hannah", "Felix", "Emily", "Samuel", "Nora", "Elias", "Maya", "Daniel", "Ruby", "Adam",
    "Chiara", "Luca", "Ingrid", "Lars", "Amara", "Kwame", "Fatima", "Yusuf", "Elena", "Ivan",
    "Clara", "Henry", "Alice", "Finn", "Rosa", "Diego", "Leila", "Tomas",
]
LAST_NAMES = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Khan", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green",
    "Hall", "Wood", "Jackson", "Clarke", "Nguyen", "Kowalski", "Rossi", "Müller", "Garcia",
    "Okafor", "Haddad", "Larsen", "Silva", "Novak", "Andersen", "O'Brien", "Murphy", "Fischer",
]


@dataclass
class DemoData:
    """Everything ``seed_demo`` writes, as plain values (so determinism can be checked)."""

    categories: list[str]
    # (sku, name, category index, price, colour, in_stock, is_active, description)
    products: list[tuple[str, str, int, Decimal, str, bool, bool, str]]
    # (username, first_name, last_name)
    customers: list[tuple[str, str, str]]
    # (customer index, product index, score, seconds before "now")
    ratings: list[tuple[int, int, int, int]] = field(default_factory=list)
    # (customer index, product index, kind, seconds before "now")
    events: list[tuple[int, int, str, int]] = field(default_factory=list)


def _price(low: float, high: float, multiplier: float, rng: random.Random) -> Decimal:
    """A shop-like price: skewed towards the low end of the range, ending in .99 or .00."""
    raw = (low + (high - low) * rng.betavariate(2.0, 3.0)) * multiplier
    if raw < 20:
        value = max(math.floor(raw), 2) + 0.99
    elif raw < 100:
        value = round(raw) - 0.01 if rng.random() < 0.7 else float(round(raw))
    else:
        value = round(raw / 5) * 5 - 0.01 if rng.random() < 0.6 else float(round(raw / 5) * 5)
    return Decimal(f"{value:.2f}")


def _colour(hue: float, rng: random.Random) -> str:
    h = (hue + rng.uniform(-0.04, 0.04)) % 1.0
    r, g, b = colorsys.hls_to_rgb(h, rng.uniform(0.45, 0.7), rng.uniform(0.35, 0.65))
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def generate(seed: int = 42, n_customers: int = 300, n_products: int = 600) -> DemoData:
    """Generate the synthetic shop. Pure: the same arguments give the same result."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    names = list(CATALOGUE)
    n_cat = len(names)
    if n_products < n_cat:
        raise ValueError(f"products must be at least {n_cat} (one per category)")

    # --- catalogue -----------------------------------------------------------------------
    products: list = []
    cat_of: list[int] = []
    price_level: list[float] = []
    per_cat = [n_products // n_cat + (1 if c < n_products % n_cat else 0) for c in range(n_cat)]
    for c, cat_name in enumerate(names):
        spec = CATALOGUE[cat_name]
        combos = [(b, s, t) for b in spec["brands"] for s in spec["styles"] for t in spec["types"]]
        rng.shuffle(combos)
        pattern = spec.get("pattern", "{brand} {style} {type}")
        prices = []
        for k in range(per_cat[c]):
            brand, (style, mult), (noun, low, high) = combos[k % len(combos)]
            name = pattern.format(brand=brand, style=style, type=noun)
            if k >= len(combos):
                name += f", {COLOURS[(k // len(combos) - 1) % len(COLOURS)]}"
            price = _price(low, high, mult, rng)
            prices.append(float(price))
            roll = rng.random()
            in_stock, is_active = roll >= 0.04, not (0.04 <= roll < 0.06)
            description = (
                f"{name}. {spec['blurb']} From {brand if pattern.startswith('{brand') else 'our'}"
                f" {cat_name.lower()} range."
            )
            products.append([None, name, c, price, _colour(spec["hue"], rng), in_stock,
                             is_active, description])
            cat_of.append(c)
        ranks = np.argsort(np.argsort(prices)) if prices else []
        price_level.extend(float(r) / max(len(prices) - 1, 1) for r in ranks)
    for i, p in enumerate(products):
        p[0] = f"SKU{i + 1:05d}"
    products = [tuple(p) for p in products]
    cat_of_a = np.asarray(cat_of)
    level = np.asarray(price_level)
    n = len(products)
    quality = nrng.normal(0.0, 0.45, n)
    popularity = nrng.lognormal(0.0, 0.8, n)
    category_weight = nrng.uniform(0.6, 1.4, n_cat)

    # --- customers and their tastes ------------------------------------------------------
    width = max(3, len(str(n_customers)))
    customers = [
        (f"{CUSTOMER_PREFIX}{i + 1:0{width}d}", rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
        for i in range(n_customers)
    ]
    data = DemoData(categories=names, products=products, customers=customers)
    horizon = HISTORY_DAYS * 86400
    for u in range(n_customers):
        n_pref = 2 + int(nrng.random() < 0.4)
        preferred = nrng.choice(n_cat, size=n_pref, replace=False,
                                p=category_weight / category_weight.sum())
        taste = np.full(n_cat, -1.2) + nrng.normal(0, 0.2, n_cat)
        for rank, c in enumerate(preferred):
            taste[c] = (1.4, 1.0, 0.7)[rank]
        band = float(np.clip(nrng.choice([0.15, 0.5, 0.85]) + nrng.normal(0, 0.08), 0, 1))
        sensitivity = nrng.uniform(1.0, 2.5)
        affinity = taste[cat_of_a] + quality - sensitivity * np.abs(level - band)
        logits = 1.8 * affinity + 0.5 * np.log(popularity)
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        n_seen = int(np.clip(nrng.lognormal(math.log(28), 0.5), 6, min(150, n)))
        seen = nrng.choice(n, size=n_seen, replace=False, p=prob)
        for p in seen:
            p = int(p)
            a = float(affinity[p])
            t = int(nrng.integers(3600, horizon))
            for _ in range(1 + int(nrng.poisson(0.6))):
                data.events.append((u, p, "view", t))
                t = max(t - int(nrng.integers(60, 3 * 86400)), 1)
            t_view = data.events[-1][3]
            bought = False
            if nrng.random() < 1 / (1 + math.exp(-(2.0 * a - 1.6))):
                t_cart = max(t_view - int(nrng.integers(30, 1800)), 1)
                data.events.append((u, p, "cart", t_cart))
                if nrng.random() < 0.6:
                    bought = True
                    t_buy = max(t_cart - int(nrng.integers(300, 7200)), 1)
                    data.events.append((u, p, "purchase", t_buy))
            if nrng.random() < (0.75 if bought else 0.3):
                score = int(np.clip(round(2.8 + 1.1 * a + nrng.normal(0, 0.8)), 1, 5))
                t_rate = max(data.events[-1][3] - int(nrng.integers(3600, 10 * 86400)), 0)
                data.ratings.append((u, p, score, t_rate))
    return data


class Command(BaseCommand):
    help = (
        "Fill the demo shop: a reproducible synthetic catalogue with customers, ratings and "
        "events, or real data with --movielens / --online-retail."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--if-empty", action="store_true",
                            help="Do nothing when products already exist (used by `make demo`).")
        parser.add_argument("--flush", action="store_true",
                            help="Delete the existing catalogue, demo customers and shopreco "
                                 "data first.")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42).")
        parser.add_argument("--customers", type=int, default=300,
                            help="Synthetic customers (default 300).")
        parser.add_argument("--products", type=int, default=600,
                            help="Synthetic products (default 600).")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--movielens", metavar="DIR",
                            help="Load MovieLens (ratings.csv/movies.csv, ratings.dat/"
                                 "movies.dat or u.data/u.item).")
        source.add_argument("--online-retail", metavar="CSV",
                            help="Load the UCI Online Retail transactions.")

    def handle(self, *args: Any, **opts: Any) -> None:
        self.verbosity = int(opts.get("verbosity", 1))
        if opts["customers"] < 1 or opts["products"] < len(CATALOGUE):
            raise CommandError(
                f"--customers must be >= 1 and --products >= {len(CATALOGUE)} (one per category)."
            )
        if Product.objects.exists():
            if opts["if_empty"]:
                self.stdout.write("Products exist already; nothing to seed (--if-empty).")
                return
            if not opts["flush"]:
                raise CommandError(
                    "The catalogue is not empty. "
                    "Use --flush to replace it or --if-empty to keep it."
                )
        started = timezone.now()
        with transaction.atomic():
            if opts["flush"]:
                self._flush()
            if opts["movielens"]:
                self._load_real("movielens", Path(opts["movielens"]))
            elif opts["online_retail"]:
                self._load_real("online-retail", Path(opts["online_retail"]))
            else:
                self._load_synthetic(opts["seed"], opts["customers"], opts["products"])
        seconds = (timezone.now() - started).total_seconds()
        self.stdout.write(self.style.SUCCESS(f"Done in {seconds:.1f} s."))

    # --- helpers ----------------------------------------------------------------------------
    def _flush(self) -> None:
        from shopreco.models import Interaction, Rating, RecomputeRun

        RecomputeRun.objects.all().delete()
        Rating.objects.all().delete()
        Interaction.objects.all().delete()
        Product.objects.all().delete()
        Category.objects.all().delete()
        get_user_model().objects.filter(
            username__regex=rf"^({CUSTOMER_PREFIX}\d+|ext-.+)$", is_staff=False
        ).delete()

    def _load_synthetic(self, seed: int, n_customers: int, n_products: int) -> None:
        from shopreco.models import Interaction, Rating

        data = generate(seed, n_customers, n_products)
        now = timezone.now().replace(microsecond=0)
        categories = Category.objects.bulk_create(
            [Category(name=name, slug=slugify(name)) for name in data.categories]
        )
        Product.objects.bulk_create(
            [
                Product(external_id=sku, name=name, category=categories[c], price=price,
                        image_color=colour, in_stock=in_stock, is_active=active,
                        description=description)
                for sku, name, c, price, colour, in_stock, active, description in data.products
            ],
            batch_size=500,
        )
        by_sku = dict(Product.objects.values_list("external_id", "pk"))
        product_pks = [by_sku[p[0]] for p in data.products]
        user_model = get_user_model()
        password = make_password(DEMO_PASSWORD)  # hashed once: every demo customer shares it
        user_model.objects.bulk_create(
            [
                user_model(username=username, first_name=first, last_name=last,
                           email=f"{username}@example.com", password=password)
                for username, first, last in data.customers
            ],
            batch_size=500,
        )
        by_name = dict(
            user_model.objects.filter(username__in=[c[0] for c in data.customers])
            .values_list("username", "pk")
        )
        user_pks = [by_name[c[0]] for c in data.customers]
        Rating.objects.bulk_create(
            [
                Rating(user_id=user_pks[u], product_id=product_pks[p], score=score,
                       created_at=now - timedelta(seconds=ago))
                for u, p, score, ago in data.ratings
            ],
            batch_size=1000,
        )
        Interaction.objects.bulk_create(
            [
                Interaction(user_id=user_pks[u], product_id=product_pks[p], kind=kind,
                            created_at=now - timedelta(seconds=ago))
                for u, p, kind, ago in data.events
            ],
            batch_size=1000,
        )
        kinds = Counter(kind for _, _, kind, _ in data.events)
        self.stdout.write(
            f"Seeded {counted(len(data.categories), 'category', 'categories')}, "
            f"{counted(len(data.products), 'product')}, "
            f"{counted(len(data.customers), 'customer')} (password {DEMO_PASSWORD!r}), "
            f"{counted(len(data.ratings), 'rating')}, {counted(len(data.events), 'event')} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); seed {seed}."
        )

    def _load_real(self, fmt: str, path: Path) -> None:
        from demo_shop.catalog import readers
        from shopreco import importing

        try:
            if fmt == "movielens":
                items = list(readers.read_movielens_items(path))
                catalogue = [
                    (item.key, item.title, (item.genres or ["Other"])[0], None, item.genres)
                    for item in items
                ]
                ratings_path = importing.find_movielens_ratings(path)
            else:
                catalogue = [
                    (item.key, item.title, _retail_category(item.title), item.price, [])
                    for item in readers.read_online_retail_items(path)
                ]
                ratings_path = path
        except importing.FatalImportError as exc:
            raise CommandError(str(exc)) from exc
        self._create_catalogue(catalogue)
        try:
            report = importing.import_file(
                ratings_path, fmt, product_field="external_id", round_scores=True,
                progress=(importing.ProgressPrinter(lambda line: self.stderr.write(
                    line, style_func=str)) if self.verbosity >= 1 else None),
            )
        except importing.FatalImportError as exc:
            raise CommandError(str(exc)) from exc
        get_user_model().objects.filter(
            username__startswith=importing.DEFAULT_USER_PREFIX, password__startswith="!"
        ).update(password=make_password(DEMO_PASSWORD))
        self.stdout.write(report.summary())
        self.stdout.write(
            f"Seeded {counted(Category.objects.count(), 'category', 'categories')} and "
            f"{counted(len(catalogue), 'product')} from "
            f"{path}; customers are {importing.DEFAULT_USER_PREFIX}<id> with password "
            f"{DEMO_PASSWORD!r}."
        )

    def _create_catalogue(self, rows: list[tuple[str, str, str, Decimal | None, list]]) -> None:
        """Products from real data: category by genre or keyword, price by category."""
        rng = random.Random(0)
        names = sorted({row[2] for row in rows})
        hues = {name: i / max(len(names), 1) for i, name in enumerate(names)}
        categories = {
            c.name: c
            for c in Category.objects.bulk_create(
                [Category(name=name[:100], slug=slugify(name)[:100] or f"c{i}")
                 for i, name in enumerate(names)]
            )
        }
        Product.objects.bulk_create(
            [
                Product(
                    external_id=key[:64], name=title[:200], category=categories[cat],
                    price=price if price is not None else Decimal(rng.choice(
                        ["3.99", "4.99", "7.99", "9.99", "12.99", "14.99"])),
                    image_color=_colour(hues[cat], rng),
                    description=(f"Genres: {', '.join(genres)}." if genres else title),
                )
                for key, title, cat, price, genres in rows
            ],
            batch_size=1000,
        )


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """A count with its noun in the right number ("1 customer"): people read this output."""
    return f"{n} {ngettext(singular, plural or f'{singular}s', n)}"


RETAIL_KEYWORDS = [
    ("Christmas", r"CHRISTMAS|XMAS|ADVENT|SANTA|REINDEER|SNOWFLAKE|BAUBLE"),
    ("Candles & Lighting", r"CANDLE|T-?LIGHT|LANTERN|LIGHTS?\b|LAMP|NIGHT LIGHT"),
    ("Bags", r"\bBAGS?\b|TOTE|SHOPPER|PURSE|LUNCH BOX"),
    ("Kitchen & Dining", r"\bMUGS?\b|\bCUPS?\b|PLATE|BOWL|TEA|CAKE|BAKING|JAR|NAPKIN|CUTLERY|"
                         r"APRON|TIN|SPOON|COFFEE|BOTTLE"),
    ("Stationery & Gift Wrap", r"\bCARDS?\b|WRAP|PAPER|NOTEBOOK|PENCIL|PEN\b|STICKER|TAPE|"
                               r"ENVELOPE|GIFT"),
    ("Home Decor", r"FRAME|CLOCK|SIGN|MIRROR|CUSHION|VASE|DOORSTOP|HOOK|HANGER|WREATH|"
                   r"ORNAMENT|HEART|DOORMAT|BUNTING"),
    ("Toys & Games", r"TOY|GAME|DOLL|PUZZLE|SPACEBOY|DOMINO|PLAYING|SKITTLES|BALLOON"),
    ("Garden", r"GARDEN|PLANT|FLOWER POT|PLANTER|BIRD|WATERING"),
    ("Jewellery & Accessories", r"NECKLACE|BRACELET|EARRING|RING\b|HAIR|UMBRELLA|SCARF"),
    ("Storage", r"BOX|BASKET|STORAGE|CRATE|DRAWER|HOLDER|TRAY|CASE"),
]


def _retail_category(description: str) -> str:
    """UCI Online Retail has no categories: derive one from keywords in the description."""
    text = description.upper().replace("_", " ")
    for name, pattern in RETAIL_KEYWORDS:
        if re.search(pattern, text):
            return name
    return "Gifts & Other"
