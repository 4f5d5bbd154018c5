"""Catalogues of the public data sets ``seed_demo`` loads (MovieLens, UCI Online Retail).

A real shop already has its products, so these readers live in the demo, not in shopreco: the
demo has to create a product for every movie or stock code before ``shopreco.importing`` can
attach ratings and purchases to them. They reuse the importer's file primitives, so a broken
file fails here with the same line-numbered :class:`~shopreco.importing.FatalImportError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from shopreco.importing import (
    NON_PRODUCT_CODES,
    FatalImportError,
    Skip,
    csv_rows,
    read_header,
    read_lines,
    retail_rows,
)

MOVIELENS_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
                    "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]


@dataclass
class CatalogItem:
    """A product described by a data set, as the demo creates it."""

    key: str
    title: str
    genres: list[str] = field(default_factory=list)
    price: Decimal | None = None


def read_movielens_items(path: Path | str) -> Iterator[CatalogItem]:
    """Movies of a MovieLens directory: ``movies.csv`` (UTF-8), ``movies.dat`` (1M/10M,
    ``::``-separated Latin-1) or ``u.item`` (100K, Latin-1)."""
    path = Path(path)
    if (path / "movies.csv").is_file():
        rows = csv_rows(path / "movies.csv", "utf-8")
        cols, width = read_header(rows, ["movieId", "title", "genres"], "MovieLens movies")
        for _line, row in rows:
            if len(row) == width and row[cols["movieid"]].strip():
                genres = [g for g in row[cols["genres"]].split("|")
                          if g and g != "(no genres listed)"]
                yield CatalogItem(row[cols["movieid"]].strip(), row[cols["title"]].strip(), genres)
    elif (path / "movies.dat").is_file():
        for _line, row in csv_rows(path / "movies.dat", "latin-1", delimiter="::"):
            if len(row) >= 3 and row[0].strip():
                genres = [g for g in row[2].strip().split("|") if g]
                yield CatalogItem(row[0].strip(), row[1].strip(), genres)
    elif (path / "u.item").is_file():
        genres_names = MOVIELENS_GENRES
        if (path / "u.genre").is_file():
            pairs = [ln.strip().split("|") for ln in read_lines(path / "u.genre", "latin-1")]
            genres_names = [p[0] for p in pairs if len(p) == 2] or MOVIELENS_GENRES
        for _line, row in csv_rows(path / "u.item", "latin-1", delimiter="|"):
            flags = row[5:]
            genres = [g for g, flag in zip(genres_names, flags, strict=False)
                      if flag.strip() == "1" and g != "unknown"]
            if row and row[0].strip():
                yield CatalogItem(row[0].strip(), row[1].strip() if len(row) > 1 else row[0],
                                  genres)
    else:
        raise FatalImportError(f"{path} holds neither movies.csv, movies.dat nor u.item")


def _title(text: str) -> str:
    """Spreadsheet descriptions are upper case with underscores; shop titles are not."""
    text = " ".join(text.replace("_", " ").split())
    return re.sub(r"[A-Za-z]+('[A-Za-z]+)?", lambda m: m.group(0).capitalize(), text)


def read_online_retail_items(path: Path | str, encoding: str = "utf-8") -> Iterator[CatalogItem]:
    """Distinct stock codes (first description, first positive price), charges left out."""
    seen: dict[str, CatalogItem] = {}
    for _line, row in retail_rows(path, encoding):
        if isinstance(row, Skip) or not row["StockCode"]:
            continue
        code = row["StockCode"]
        if code.upper() in NON_PRODUCT_CODES:
            continue
        item = seen.get(code)
        if item is None:
            item = seen[code] = CatalogItem(code, "")
        if not item.title and row.get("Description"):
            item.title = _title(row["Description"])
        if item.price is None and row.get("UnitPrice"):
            try:
                price = Decimal(row["UnitPrice"]).quantize(Decimal("0.01"))
            except InvalidOperation:
                continue
            if price > 0:
                item.price = price
    for item in seen.values():
        item.title = item.title or f"Item {item.key}"
        yield item
