"""The demo's catalogue readers (MovieLens movies, Online Retail stock codes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo_shop.catalog import readers
from shopreco.importing import FatalImportError

RETAIL_HEADER = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
)


def test_online_retail_catalogue_reader(tmp_path: Path):
    path = tmp_path / "retail.csv"
    path.write_text(RETAIL_HEADER + (
        "1,85123A,WHITE_HANGING_HEART_T-LIGHT_HOLDER,6,2010-12-01 08:26:00,0,1,UK\n"
        "2,85123A,OTHER NAME,6,2010-12-01 08:26:00,2.55,1,UK\n"
        "3,POST,POSTAGE,1,2010-12-01 08:26:00,18,1,UK\n"
        "C4,22633,CHILDREN'S HAND WARMER,-1,2010-12-01 08:26:00,1.85,,UK\n"
    ), encoding="utf-8")
    items = {i.key: i for i in readers.read_online_retail_items(path)}
    assert set(items) == {"85123A", "22633"}
    assert items["85123A"].title == "White Hanging Heart T-Light Holder"
    assert str(items["85123A"].price) == "2.55"
    assert items["22633"].title == "Children's Hand Warmer"


def test_movielens_movies_csv_and_broken_header(tmp_path: Path):
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
        "2,Nothing (2001),(no genres listed)\n", encoding="utf-8")
    items = list(readers.read_movielens_items(tmp_path))
    assert [(i.key, i.title, i.genres) for i in items] == [
        ("1", "Toy Story (1995)", ["Adventure", "Animation"]), ("2", "Nothing (2001)", [])]
    (tmp_path / "movies.csv").write_text("movieId,tit\n1,x\n", encoding="utf-8")
    with pytest.raises(FatalImportError, match=r"line 1: missing column\(s\) title, genres"):
        list(readers.read_movielens_items(tmp_path))


def test_the_library_no_longer_ships_the_demo_readers():
    from shopreco import importing

    for name in ("CatalogItem", "read_movielens_items", "read_online_retail_items"):
        assert not hasattr(importing, name)
