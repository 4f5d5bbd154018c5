"""Bulk writes of run results: COPY on PostgreSQL, batched executemany elsewhere.

Results are hundreds of thousands of rows (every product's neighbours, twice), so the ORM's
per-object ``bulk_create`` would dominate a run. Values are prepared once per distinct key
through the model field (``get_db_prep_save``), so UUID and text product keys are stored
exactly as the ORM would store them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from django.db import connections, router, transaction
from django.db.models import Model
from django.utils import timezone

from shopreco.models import ItemSimilarity, Recommendation

BATCH_SIZE = 5000
# Parallel COPY streams on PostgreSQL (each its own connection); see copy_chunks.
STREAMS = 2
# COPY's binary format: signature, flags, header extension length; the trailer ends it.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_BINARY_TRAILER = struct.pack(">h", -1)
# Integer columns in COPY's binary format (big-endian); other key types go as text.
_BINARY_INTS = {"bigint": ">i8", "integer": ">i4", "smallint": ">i2"}


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
    table, col_sql = _table_and_columns(model, columns, conn)
    n = 0
    with transaction.atomic(using=using), conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({col_sql}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
            return n
        sql = f"INSERT INTO {table} ({col_sql}) VALUES ({', '.join(['%s'] * len(columns))})"
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


def vacuum_analyze(*models: type[Model]) -> None:
    """VACUUM ANALYZE the result tables on PostgreSQL (other databases need nothing).

    Planner statistics: right after a first run the tables look empty to the planner, which
    then picks sequential scans for the serving queries. VACUUM: pruned runs leave dead rows
    that only it reclaims (autovacuum may be off, or late after a bulk load), and it keeps
    the visibility map current for index-only scans. VACUUM cannot run in a transaction
    block: inside one (tests, a caller's atomic block) only ANALYZE runs.
    """
    conn = connections[_db(models[0])]
    if conn.vendor != "postgresql":
        return
    tables = ", ".join(conn.ops.quote_name(m._meta.db_table) for m in models)
    command = "ANALYZE" if conn.in_atomic_block else "VACUUM (ANALYZE)"
    with conn.cursor() as cursor:
        cursor.execute(f"{command} {tables}")


def _table_and_columns(model: type[Model], columns: Sequence[str], conn) -> tuple[str, str]:
    table = conn.ops.quote_name(model._meta.db_table)
    cols = [model._meta.get_field(c.removesuffix("_id")).column if c.endswith("_id")
            else model._meta.get_field(c).column for c in columns]
    return table, ", ".join(conn.ops.quote_name(c) for c in cols)


def _copy_literal(value: Any) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if isinstance(value, str):
        text = (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return text


def copy_chunks(model: type[Model], columns: Sequence[str], chunks: Sequence[str | bytes],
                binary: bool = False) -> None:
    """COPY pre-formatted chunks (text, or whole binary-format streams with ``binary``), in
    parallel connections when that is safe.

    Index maintenance in the server dominates the cost of writing results, and it scales
    with backends: each chunk gets its own connection (and transaction) unless we are inside
    an outer transaction (tests, or a caller's atomic block), where all go through it.
    """
    using = _db(model)
    conn = connections[using]
    table, col_sql = _table_and_columns(model, columns, conn)
    sql = f"COPY {table} ({col_sql}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
    chunks = [c for c in chunks if c]

    def one(data: str | bytes, own_connection: bool) -> None:
        c = connections[using]
        try:
            with transaction.atomic(using=using), c.cursor() as cursor:
                with cursor.cursor.copy(sql) as copy:
                    copy.write(data.encode() if isinstance(data, str) else data)
        finally:
            if own_connection:
                c.close()

    if len(chunks) <= 1 or conn.in_atomic_block:
        for text in chunks:
            one(text, False)
        return
    with ThreadPoolExecutor(len(chunks)) as pool:
        for future in [pool.submit(one, data, True) for data in chunks]:
            future.result()


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, n // 20000 + 1))
    return [(n * k // parts, n * (k + 1) // parts) for k in range(parts)]


def _binary_int(model: type[Model], field: str, conn) -> str | None:
    """numpy dtype of an integer column in COPY's binary format, None if not an integer."""
    return _BINARY_INTS.get(model._meta.get_field(field).db_type(conn))


def similarity_rows_binary(run_id: int, kind: str, src: np.ndarray, dst: np.ndarray,
                           score: np.ndarray, keys: Sequence[Any], conn,
                           parts: int = 1) -> list[bytes] | None:
    """ItemSimilarity rows as COPY binary streams (one per part), built by numpy in one pass
    instead of formatting and parsing text per row; None unless product keys are integers
    (UUID and text keys go through the text format)."""
    key_t = _binary_int(ItemSimilarity, "product", conn)
    run_t = _binary_int(ItemSimilarity, "run", conn)
    if key_t is None or run_t is None or \
            ItemSimilarity._meta.get_field("score").db_type(conn) != "double precision":
        return None
    label = kind.encode()
    dtype = np.dtype([
        ("fields", ">i2"), ("run_len", ">i4"), ("run", run_t), ("kind_len", ">i4"),
        ("kind", f"S{len(label)}"), ("src_len", ">i4"), ("src", key_t), ("dst_len", ">i4"),
        ("dst", key_t), ("score_len", ">i4"), ("score", ">f8"),
    ])
    k = np.asarray(keys, dtype=np.int64)
    rows = np.empty(src.size, dtype=dtype)
    rows["fields"] = 5
    rows["run_len"], rows["run"] = np.dtype(run_t).itemsize, run_id
    rows["kind_len"], rows["kind"] = len(label), label
    rows["src_len"], rows["src"] = np.dtype(key_t).itemsize, k[src]
    rows["dst_len"], rows["dst"] = np.dtype(key_t).itemsize, k[dst]
    rows["score_len"], rows["score"] = 8, score
    return [_BINARY_HEADER + rows[a:b].tobytes() + _BINARY_TRAILER
            for a, b in _split(src.size, parts)]


def write_similarities(run_id: int, kind: str, src: np.ndarray, dst: np.ndarray,
                       score: np.ndarray, keys: list[Any], binary: bool = True) -> int:
    """ItemSimilarity rows (product index, neighbour index, score) of one kind.

    On PostgreSQL: COPY in binary format when product keys are integers (``binary=False``
    forces text), else in text format."""
    columns = ["run_id", "kind", "product_id", "similar_product_id", "score"]
    conn = connections[_db(ItemSimilarity)]
    if conn.vendor == "postgresql" and binary:
        streams = similarity_rows_binary(run_id, kind, src, dst, score, keys, conn, STREAMS)
        if streams is not None:
            copy_chunks(ItemSimilarity, columns, streams, binary=True)
            return int(src.size)
    if conn.vendor == "postgresql":
        ks = [_copy_literal(k) for k in keys]
        s_, d_, v_ = src.tolist(), dst.tolist(), score.tolist()
        head = f"{run_id}\t{_copy_literal(kind)}\t"
        chunks = [
            "".join(f"{head}{ks[s_[r]]}\t{ks[d_[r]]}\t{v_[r]!r}\n" for r in range(a, b))
            for a, b in _split(len(s_), STREAMS)
        ]
        copy_chunks(ItemSimilarity, columns, chunks)
        return len(s_)
    rows = (
        (run_id, kind, keys[i], keys[j], s)
        for i, j, s in zip(src.tolist(), dst.tolist(), score.tolist(), strict=True)
    )
    return insert_rows(ItemSimilarity, columns, rows)


def write_recommendations(run_id: int, users: np.ndarray, items: np.ndarray, scores: np.ndarray,
                          ranks: np.ndarray, reasons: Sequence[str], reason_items: np.ndarray,
                          user_keys: list[Any], product_keys: list[Any]) -> int:
    """Recommendation rows; ``reason_items`` is -1 where there is no reason product."""
    conn = connections[_db(Recommendation)]
    columns = ["run_id", "user_id", "product_id", "score", "rank", "reason",
               "reason_product_id", "created_at"]
    if conn.vendor == "postgresql":
        ks = [_copy_literal(k) for k in product_keys] + ["\\N"]  # index -1 -> NULL
        us = [_copy_literal(k) for k in user_keys]
        now = _copy_literal(timezone.now())
        cols = (users.tolist(), items.tolist(), scores.tolist(), ranks.tolist(), list(reasons),
                reason_items.tolist())
        u_, i_, s_, r_, why, ri = cols
        chunks = [
            "".join(f"{run_id}\t{us[u_[x]]}\t{ks[i_[x]]}\t{s_[x]!r}\t{r_[x]}\t{why[x]}\t"
                    f"{ks[ri[x]]}\t{now}\n" for x in range(a, b))
            for a, b in _split(len(u_), STREAMS)
        ]
        copy_chunks(Recommendation, columns, chunks)
        return len(u_)
    now = Recommendation._meta.get_field("created_at").get_db_prep_save(timezone.now(), conn)
    rows = (
        (run_id, user_keys[u], product_keys[i], s, r, reason,
         product_keys[ri] if ri >= 0 else None, now)
        for u, i, s, r, reason, ri in zip(
            users.tolist(), items.tolist(), scores.tolist(), ranks.tolist(), reasons,
            reason_items.tolist(), strict=True,
        )
    )
    return insert_rows(Recommendation, columns, rows)
