"""Locust scenario for bench_api_load.py: shoppers using the REST API, 80% reads / 20% writes.

Signed-in shoppers (token auth, 4 in 5) and anonymous session shoppers (1 in 5, CSRF token
from the shop's sign-in page). Reads: similar products, recommendations, popular, also
bought, own ratings. Writes: events that carry the recommendation id of a list just served
(a credited click), and ratings. Reads the fixture written by bench_api_load.py
($BENCH_API_FIXTURE): tokens, product and category keys.

With BENCH_API_BARE=1 (bench_serving.py, whose URLconf serves it) shoppers also read the bare
DRF view ``bench-bare/products/{pk}/similar/`` as often as ``similar/``, for a side-by-side
tail; the number of requests per second stays the same (one per think time per shopper).
"""

from __future__ import annotations

import json
import os
import random

import gevent
from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

with open(os.environ["BENCH_API_FIXTURE"]) as fh:
    FIXTURE = json.load(fh)

API = "/api/reco/"
PRODUCTS: list = FIXTURE["products"]
CATEGORIES: list = FIXTURE["categories"]
TOKENS: list = FIXTURE["tokens"]
_next_token = iter(range(10**9))


class _Shopper(FastHttpUser):
    abstract = True
    wait_time_max = float(os.environ.get("BENCH_API_WAIT_MAX", "3.0"))
    wait_time = between(float(os.environ.get("BENCH_API_WAIT_MIN", "1.0")), wait_time_max)
    headers: dict = {}

    def on_start(self) -> None:
        self.last_list: tuple[str, list] | None = None
        # Shoppers arrive spread over one think time, not all in the same instant (locust
        # starts all 50 within a second, which would make every shopper click in lockstep).
        gevent.sleep(random.uniform(0, self.wait_time_max))

    def _list(self, url: str, name: str, may_be_empty: bool = False, **params) -> None:
        with self.client.get(url, params=params or None, headers=self.headers, name=name,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            body = response.json()
            picks = [r["product"]["pk"] for r in body["results"]]
            if not picks:
                if not may_be_empty:
                    response.failure("empty list")
                return
            self.last_list = (body["recommendation_id"], picks)

    @task(30)
    def similar(self) -> None:
        self._list(f"{API}products/{random.choice(PRODUCTS)}/similar/",
                   "GET products/{pk}/similar/", limit=6)

    if os.environ.get("BENCH_API_BARE") == "1":
        @task(30)
        def bare_similar(self) -> None:
            with self.client.get(f"/bench-bare/products/{random.choice(PRODUCTS)}/similar/",
                                 params={"limit": 6}, headers=self.headers,
                                 name="GET bench-bare/products/{pk}/similar/",
                                 catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}")
                elif not response.json()["results"]:
                    response.failure("empty list")

    @task(25)
    def recommendations(self) -> None:
        self._list(f"{API}recommendations/", "GET recommendations/", limit=6)

    @task(8)
    def popular(self) -> None:
        if random.random() < 0.5:
            self._list(f"{API}popular/", "GET popular/?category=", limit=6,
                       category=random.choice(CATEGORIES))
        else:
            self._list(f"{API}popular/", "GET popular/", limit=6)

    @task(10)
    def also_bought(self) -> None:
        # Never padded: a product nobody bought with another (every MovieLens product) has
        # an empty list, a right answer.
        self._list(f"{API}products/{random.choice(PRODUCTS)}/also-bought/",
                   "GET products/{pk}/also-bought/", may_be_empty=True, limit=4)

    @task(12)
    def event(self) -> None:
        # The kinds clients may post (CLIENT_EVENT_KINDS): purchases are recorded by the
        # shop's server at checkout (shopreco.track), so a client posting one gets a 400.
        body = {"product": random.choice(PRODUCTS), "type": random.choice(
            ["view", "view", "view", "cart"])}
        if self.last_list is not None:
            rec_id, picks = self.last_list
            body = {**body, "product": random.choice(picks), "recommendation_id": rec_id}
        self.client.post(f"{API}events/", json=body, headers=self.headers, name="POST events/")


class SignedInShopper(_Shopper):
    weight = 4

    def on_start(self) -> None:
        super().on_start()
        token = TOKENS[next(_next_token) % len(TOKENS)]
        self.headers = {"Authorization": f"Token {token}"}

    @task(5)
    def my_ratings(self) -> None:
        self.client.get(f"{API}ratings/", headers=self.headers, name="GET ratings/")

    @task(8)
    def rate(self) -> None:
        body = {"product": random.choice(PRODUCTS), "score": random.randint(1, 5)}
        self.client.post(f"{API}ratings/", json=body, headers=self.headers,
                         name="POST ratings/")


class AnonymousShopper(_Shopper):
    """A browser without an account: session cookie plus the CSRF token, as a shop page's
    JavaScript would send them."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        self.client.get("/login/", name="GET /login/ (csrf cookie)")
        token = self.client.cookiejar and next(
            (c.value for c in self.client.cookiejar if c.name == "csrftoken"), None
        )
        self.headers = {"X-CSRFToken": token} if token else {}

    # Same 80/20 mix as signed-in shoppers: anonymous visitors do not rate, so their
    # reads stand in for "my ratings" and their writes are all events.
    @task(5)
    def more_similar(self) -> None:
        self.similar()

    @task(8)
    def more_events(self) -> None:
        self.event()
