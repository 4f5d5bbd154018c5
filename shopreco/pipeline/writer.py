"""Bulk writes of run results: COPY on PostgreSQL, batched executemany elsewhere.

Results are hundreds of thousands of rows (every product's neighbours, twice), so the ORM's
per-object ``bulk_create`` would dominate a run. Values are prepared once per distinct key
through the model field (``get_db_prep_save``), so UUID and text product keys are stored
exactly as the ORM would store them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from django.db import connections, router, transaction
from django.db.models import Model
from django.utils import timezone

from shopreco.models import ItemSimilarity, Recommendation

BATCH_SIZE = 5000


def _db(model: type[Model]) -> str:
    return router.db_for_write(model)


def prep_keys(model: type[Model], field: str, pks: np.ndarray) -> list[Any]:
    """Database values of ``pks`` for FK ``field`` of ``model`` (index -> db value)."""
    f = model._meta.get_field(field)
    conn = connections[_db(model)]
    return [f.get_db_prep_save(p.item() if hasattr(p, "item") else p, conn) for p in pks]


def insert_rows(model: type[Model], columns: Sequence[str], rows: Iterable[tuple]) -> int:
    """Insert prepared rows; ``columns`` are field attnames. Returns the row count."""
    using = _db(model)
    conn = connections[using]
    table = conn.ops.quote_name(model._meta.db_table)
    cols = [model._meta.get_field(c.removesuffix("_id")).column if c.endswith("_id")
            else model._meta.get_field(c).column for c in columns]
    col_sql = ", ".join(conn.ops.quote_name(c) for c in cols)
    n = 0
    with transaction.atomic(using=using), conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            raw = cursor.cursor  # psycopg 3 cursor
            with raw.copy(f"COPY {table} ({col_sql}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
            return n
        sql = f"INSERT INTO {table} ({col_sql}) VALUES ({', '.join(['%s'] * len(cols))})"
        batch: list[tuple] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH_SIZE:
                cursor.executemany(sql, batch)
                n += len(batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)
            n += len(batch)
    return n


def write_similarities(run_id: int, kind: str, src: np.ndarray, dst: np.ndarray,
                       score: np.ndarray, keys: list[Any]) -> int:
    """ItemSimilarity rows (product index, neighbour index, score) of one kind."""
    rows = (
        (run_id, kind, keys[i], keys[j], s)
        for i, j, s in zip(src.tolist(), dst.tolist(), score.tolist(), strict=True)
    )
    return insert_rows(
        ItemSimilarity, ["run_id", "kind", "product_id", "similar_product_id", "score"], rows
    )


def write_recommendations(run_id: int, users: np.ndarray, items: np.ndarray, scores: np.ndarray,
                          ranks: np.ndarray, reasons: Sequence[str], reason_items: np.ndarray,
                          user_keys: list[Any], product_keys: list[Any]) -> int:
    """Recommendation rows; ``reason_items`` is -1 where there is no reason product."""
    conn = connections[_db(Recommendation)]
    now = Recommendation._meta.get_field("created_at").get_db_prep_save(timezone.now(), conn)
    rows = (
        (run_id, user_keys[u], product_keys[i], s, r, reason,
         product_keys[ri] if ri >= 0 else None, now)
        for u, i, s, r, reason, ri in zip(
            users.tolist(), items.tolist(), scores.tolist(), ranks.tolist(), reasons,
            reason_items.tolist(), strict=True,
        )
    )
    return insert_rows(
        Recommendation,
        ["run_id", "user_id", "product_id", "score", "rank", "reason", "reason_product_id",
         "created_at"],
        rows,
    )
