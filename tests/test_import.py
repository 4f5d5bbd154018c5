"""shopreco_import on good and broken files: counts, line numbers, nothing written when fatal."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from shopreco import importing
from shopreco.models import Interaction, Rating

pytestmark = pytest.mark.django_db


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def run(path: Path, fmt: str = "csv", *args: str) -> str:
    out = io.StringIO()
    call_command("shopreco_import", str(path), "--format", fmt, *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def catalogue(product_factory):
    """Three products known by external id A1, A2, A3."""
    return {key: product_factory(external_id=key) for key in ("A1", "A2", "A3")}


def ext_users() -> list[str]:
    return sorted(
        get_user_model().objects.filter(username__startswith="ext-").values_list("username",
                                                                                  flat=True)
    )


def test_good_csv_imports_ratings_and_events(tmp_path, catalogue):
    path = write(tmp_path, "good.csv", (
        "user,product,score,kind,timestamp\n"
        "u1,A1,5,,2024-03-01T10:00:00Z\n"
        "u1,A2,,view,1709287200\n"
        "u2,A2,3,,\n"
        "u2,A3,,purchase,2024-03-02 12:30:00\n"
    ))
    out = run(path, "csv", "--product-field", "external_id")
    assert "4 rows read, 2 ratings and 2 events kept, 2 users created" in out
    assert ext_users() == ["ext-u1", "ext-u2"]
    rating = Rating.objects.get(user__username="ext-u1")
    assert (rating.product, rating.score) == (catalogue["A1"], 5.0)
    assert rating.created_at == datetime(2024, 3, 1, 10, tzinfo=UTC)
    view = Interaction.objects.get(kind="view")
    assert view.created_at == datetime.fromtimestamp(1709287200, tz=UTC)
    assert Interaction.objects.get(kind="purchase").product == catalogue["A3"]
    # New users cannot log in until the shop gives them a password.
    assert not get_user_model().objects.get(username="ext-u1").has_usable_password()


def test_product_lookup_defaults_to_primary_key(tmp_path, catalogue):
    a1 = catalogue["A1"]
    path = write(tmp_path, "pk.csv", f"user,product,score\nu1,{a1.pk},4\nu1,abc,4\nu1,999999,2\n")
    out = run(path)
    assert Rating.objects.get().product == a1
    assert "line 3: product 'abc' is not a valid id" in out
    assert "line 4: unknown product '999999'" in out


def test_per_row_errors_are_skipped_and_reported_with_line_numbers(tmp_path, catalogue):
    path = write(tmp_path, "bad_rows.csv", (
        "user,product,score,kind\n"
        "u1,A1,4,\n"            # 2 ok
        "u1,A2,7,\n"            # 3 out of scale
        "u2,A2,three,\n"        # 4 not a number
        "u2,NOPE,4,\n"          # 5 unknown product
        "u3,A3,,click\n"        # 6 unknown kind
        "u4,A3,2.5,\n"          # 7 not a whole star
        "bad user,A1,3,\n"      # 8 invalid user id
        ",A1,3,\n"              # 9 empty user
        "u5,A1,,\n"             # 10 neither score nor kind
        "u6,A3,5,,extra\n"      # 11 too many fields
        "u6,A3,,cart\n"         # 12 ok
        "u7,A1,3"               # 13 truncated last row
    ))
    out = run(path, "csv", "--product-field", "external_id")
    assert ("12 rows read, 1 rating and 1 event kept, 2 users created, 0 dropped, "
            "10 rejected") in out
    for expected in [
        "line 3: score 7 outside 1-5",
        "line 4: score 'three' is not a number",
        "line 5: unknown product 'NOPE'",
        "line 6: unknown event kind 'click'",
        "line 7: score 2.5 is not a multiple of 1",
        "line 8: user id 'bad user' has characters not allowed",
        "line 9: user and product must not be empty",
        "line 10: row has neither a score nor a kind",
        "line 11: expected 4 fields, found 5",
        "line 13: expected 4 fields, found 3 (truncated row?)",
    ]:
        assert expected in out
    assert Rating.objects.count() == 1 and Interaction.objects.count() == 1
    assert ext_users() == ["ext-u1", "ext-u6"]  # no users for rejected rows


def test_report_lists_only_the_first_rejects_in_line_order(tmp_path, catalogue):
    rows = "".join(f"u{i},{'NOPE' if i % 2 else 'A1'},{9 if i % 2 == 0 else 3}\n"
                   for i in range(40))
    path = write(tmp_path, "many.csv", "user,product,score\n" + rows)
    report = importing.import_file(path, "csv", product_field="external_id", batch_size=7)
    assert report.rejected_total == 40
    lines = [line for line, _ in sorted(report.rejects)]
    assert lines == list(range(2, 2 + importing.MAX_REPORTED))


def test_half_stars_follow_the_configured_scale(tmp_path, catalogue):
    path = write(tmp_path, "half.csv", "user,product,score\nu1,A1,3.5\nu1,A2,0.5\n")
    with override_settings(SHOPRECO={"RATING_HALF_STARS": True, "RATING_MIN": 0.5}):
        report = importing.import_file(path, "csv", product_field="external_id")
    assert report.ratings == 2 and report.rejected_total == 0
    assert sorted(Rating.objects.values_list("score", flat=True)) == [0.5, 3.5]


def test_duplicates_keep_the_latest_across_batches(tmp_path, catalogue):
    path = write(tmp_path, "dups.csv", (
        "user,product,score,kind,timestamp\n"
        "u1,A1,2,,2024-01-02T00:00:00\n"
        "u1,A1,5,,2024-01-09T00:00:00\n"   # latest by time
        "u1,A2,1,,\n"
        "u1,A1,3,,2024-01-05T00:00:00\n"   # later line but older: dropped
        "u1,A2,4,,\n"                      # same time (none): the later line wins
        "u1,A3,,view,2024-01-01T00:00:00\n"
        "u1,A3,,view,2024-01-01T00:00:00\n"  # identical event
        "u1,A3,,view,2024-01-01T00:00:01\n"  # a different view
    ))
    report = importing.import_file(path, "csv", product_field="external_id", batch_size=2)
    assert (report.ratings, report.events) == (2, 2)
    assert report.dropped == {"duplicate rating (kept the latest)": 3, "duplicate event": 1}
    scores = dict(Rating.objects.values_list("product__external_id", "score"))
    assert scores == {"A1": 5.0, "A2": 4.0}
    assert Rating.objects.get(product__external_id="A1").created_at.day == 9


def test_reimport_adds_no_events_and_updates_ratings(tmp_path, catalogue):
    first = write(tmp_path, "a.csv", "user,product,score,kind,timestamp\n"
                                     "u1,A1,2,,2024-01-01T00:00:00\n"
                                     "u1,A2,,purchase,2024-01-01T00:00:00\n")
    importing.import_file(first, "csv", product_field="external_id")
    second = write(tmp_path, "b.csv", "user,product,score,kind,timestamp\n"
                                      "u1,A1,4,,2024-02-01T00:00:00\n"
                                      "u1,A2,,purchase,2024-01-01T00:00:00\n")
    report = importing.import_file(second, "csv", product_field="external_id")
    assert report.events == 0 and report.dropped == {"event already in the database": 1}
    assert Interaction.objects.count() == 1
    assert list(Rating.objects.values_list("score", flat=True)) == [4.0]
    assert report.users_created == 0


# --- fatal errors: nothing written ------------------------------------------------------------


def assert_nothing_written() -> None:
    assert Rating.objects.count() == 0
    assert Interaction.objects.count() == 0
    assert ext_users() == []


def test_wrong_encoding_is_fatal_and_names_the_line(tmp_path, catalogue):
    text = "user,product,score\nu1,A1,4\nu2,A2,5\nRen\xe9e,A3,3\nu3,A1,2\n".encode("latin-1")
    path = write(tmp_path, "latin1.csv", text)
    with pytest.raises(CommandError, match=r"line 4: not valid utf-8 \(byte 0xe9 at column 4\)"):
        # batch size 1: earlier rows were already written and must be rolled back
        run(path, "csv", "--product-field", "external_id", "--batch-size", "1")
    assert_nothing_written()
    out = run(path, "csv", "--product-field", "external_id", "--encoding", "latin-1")
    assert "4 rows read, 4 ratings" in out
    assert "ext-Renée" in ext_users()


def test_utf16_file_is_fatal(tmp_path, catalogue):
    path = write(tmp_path, "utf16.csv", "user,product,score\nu1,A1,4\n".encode("utf-16"))
    with pytest.raises(CommandError, match="line 1: the file is UTF-16 encoded"):
        run(path, "csv", "--product-field", "external_id")
    assert_nothing_written()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"line 1: the file is empty"),
        ("\n\n", r"line 1: the file is empty"),
        ("user,prod", r"line 1: missing column\(s\) product \(the header looks truncated\)"),
        ("user,product\nu1,A1\n", r"line 1: missing column: the header needs 'score' or 'kind'"),
        ("user,product,score\nu1,A1,4\nu2,A2\x00,5\n", r"line 3: NUL byte at column 6"),
        ("user,product,score\nu1,A1,4\n" + "x" * 200_000 + ",A1,3\n",
         r"line 3: malformed CSV: field larger than field limit"),
    ],
    ids=["empty", "blank", "truncated-header", "no-score-or-kind", "nul-byte", "huge-field"],
)
def test_broken_files_are_fatal(tmp_path, catalogue, text, message):
    path = write(tmp_path, "broken.csv", text)
    with pytest.raises(CommandError, match=message):
        run(path, "csv", "--product-field", "external_id")
    assert_nothing_written()


def test_missing_file_and_bad_options_are_fatal(tmp_path, catalogue):
    with pytest.raises(CommandError, match="cannot open"):
        run(tmp_path / "nope.csv")
    path = write(tmp_path, "ok.csv", "user,product,score\nu1,A1,4\n")
    with pytest.raises(CommandError, match="product field 'sku' does not exist on catalog.Product"):
        run(path, "csv", "--product-field", "sku")
    with pytest.raises(CommandError, match="unknown encoding"):
        run(path, "csv", "--encoding", "klingon")
    assert_nothing_written()


def test_strict_mode_turns_rejects_into_a_fatal_error(tmp_path, catalogue):
    path = write(tmp_path, "strict.csv", "user,product,score\nu1,A1,4\nu1,A2,9\n")
    with pytest.raises(CommandError, match="line 3: score 9 outside 1-5"):
        run(path, "csv", "--product-field", "external_id", "--strict")
    assert_nothing_written()


def test_dry_run_counts_but_writes_nothing(tmp_path, catalogue):
    path = write(tmp_path, "dry.csv", "user,product,score\nu1,A1,4\nu2,A2,9\n")
    out = run(path, "csv", "--product-field", "external_id", "--dry-run")
    assert "Would import" in out and "1 rating and 0 events kept, 1 user created" in out
    assert "line 3: score 9 outside 1-5" in out and "Dry run: nothing was written." in out
    assert_nothing_written()


# --- MovieLens and Online Retail ---------------------------------------------------------------


def test_movielens_ratings_csv_and_u_data(tmp_path, catalogue):
    ml = tmp_path / "ml"
    ml.mkdir()
    write(ml, "ratings.csv", "userId,movieId,rating,timestamp\n"
                             "1,A1,4.0,964982703\n1,A2,3.5,964982704\n2,A3,0.5,964982705\n")
    report = importing.import_file(ml, "movielens", product_field="external_id")
    assert (report.ratings, report.rejected_total) == (1, 2)
    assert sorted(m for _, m in report.rejects) == [
        "score 0.5 outside 1-5", "score 3.5 is not a multiple of 1"]
    report = importing.import_file(ml, "movielens", product_field="external_id",
                                   round_scores=True)
    assert report.ratings == 3
    scores = dict(Rating.objects.values_list("product__external_id", "score"))
    assert scores == {"A1": 4.0, "A2": 4.0, "A3": 1.0}

    old = write(tmp_path, "u.data", "7\tA1\t5\t874965758\n7\tA2\t9\t874965758\n8\tA3\n")
    out = run(old, "movielens", "--product-field", "external_id")
    assert "3 rows read, 1 rating and 0 events" in out
    assert "line 2: score 9 outside 1-5" in out
    assert "line 3: expected 4 fields, found 2 (truncated row?)" in out


def test_movielens_1m_dat_and_headerless_csv(tmp_path, catalogue):
    ml = tmp_path / "ml-1m"
    ml.mkdir()
    write(ml, "ratings.dat", "1::A1::5::978300760\n1::A2::x::978300761\n2::A3::4\n")
    report = importing.import_file(ml, "movielens", product_field="external_id")
    assert report.ratings == 1
    assert sorted(report.rejects) == [(2, "rating 'x' is not a number"),
                                      (3, "expected 4 fields, found 3 (truncated row?)")]
    bare = write(tmp_path, "export.csv", "3,A2,4,964982703\n3,A3,2,964982704\n")
    report = importing.import_file(bare, "movielens", product_field="external_id")
    assert (report.ratings, report.rejected_total) == (2, 0)
    assert Rating.objects.get(user__username="ext-3", product=catalogue["A2"]).created_at == \
        datetime.fromtimestamp(964982703, tz=UTC)


def test_loose_ratings_layout_by_position(tmp_path):
    """The evaluate command's ``csv``: optional header, any of the three separators, the
    timestamp optional and extra columns ignored; bad rows are Skips naming their line."""
    path = write(tmp_path, "r.txt", "who\twhat\tstars\nu1\tm1\t4\t1000\nu1\tm2\t3\n"
                                    "u2\tm1\n\tm3\t5\nu3\tm3\tfive\nu3\tm4\t2\t1\textra\n")
    items = list(importing.parse_ratings(path))
    records = [i for i in items if isinstance(i, importing.Record)]
    skips = {i.line: i.message for i in items if isinstance(i, importing.Skip)}
    assert [(r.line, r.user, r.product, r.score) for r in records] == [
        (2, "u1", "m1", 4.0), (3, "u1", "m2", 3.0), (7, "u3", "m4", 2.0)]
    assert records[0].at == datetime.fromtimestamp(1000, tz=UTC) and records[1].at is None
    assert skips == {4: "expected 3 fields, found 2 (truncated row?)",
                     5: "user and item must not be empty",
                     6: "rating 'five' is not a number"}
    with pytest.raises(importing.FatalImportError, match="line 1: the file is empty"):
        list(importing.parse_ratings(write(tmp_path, "empty.csv", "\n")))


RETAIL_HEADER = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
)


def test_online_retail_purchases(tmp_path, catalogue):
    path = write(tmp_path, "retail.csv", RETAIL_HEADER + (
        "536365,A1,WHITE MUG,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "536365,A1,WHITE MUG,2,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"  # duplicate
        "C536379,A2,RED BAG,-1,2010-12-01 09:41:00,27.50,14527.0,United Kingdom\n"  # cancelled
        "536380,A2,RED BAG,-3,12/1/2010 9:45,4.25,14527,United Kingdom\n"  # negative quantity
        "536381,A3,LAMP,1,12/1/2010 9:45,4.25,,United Kingdom\n"  # guest
        "536382,POST,POSTAGE,1,2010-12-01 10:00:00,18.00,12583,France\n"  # a charge
        "536383,A3,LAMP,2,yesterday,4.25,12583,France\n"  # bad date
        "536384,A3,LAMP,two,2010-12-01 10:00:00,4.25,12583,France\n"  # bad quantity
        "536385,A2,RED BAG,1,12/1/2010 10:05,4.25,12583,France\n"
    ))
    out = run(path, "online-retail", "--product-field", "external_id")
    assert "9 rows read, 0 ratings and 2 events kept, 2 users created" in out
    for expected in ("dropped 1: cancelled invoice", "dropped 1: non-positive quantity",
                     "dropped 1: guest purchase", "dropped 1: not a product",
                     "dropped 1: duplicate event",
                     "line 8: time 'yesterday' is not ISO 8601",
                     "line 9: Quantity 'two' is not a number"):
        assert expected in out
    assert ext_users() == ["ext-12583", "ext-17850"]
    second = Interaction.objects.get(user__username="ext-12583")
    assert (second.kind, second.product) == ("purchase", catalogue["A2"])
    assert second.created_at == datetime(2010, 12, 1, 10, 5, tzinfo=UTC)


def test_online_retail_missing_columns_is_fatal(tmp_path, catalogue):
    path = write(tmp_path, "retail.csv",
                 "InvoiceNo,StockCode,Quantity,InvoiceDate\n536365,A1,6,2010-12-01 08:26:00\n")
    with pytest.raises(CommandError, match=r"line 1: missing column\(s\) CustomerID"):
        run(path, "online-retail", "--product-field", "external_id")
    assert_nothing_written()


def test_counts_agree_with_their_nouns(tmp_path, catalogue):
    """"1 rating", not "1 ratings": the summary is read by people."""
    out = run(write(tmp_path, "one.csv", "user,product,score\nu1,A1,4\n"), "csv",
              "--product-field", "external_id")
    assert "1 row read, 1 rating and 0 events kept, 1 user created" in out


def many_rows(tmp_path: Path, n: int) -> Path:
    lines = ["user,product,kind,timestamp"]
    lines += [f"u{i % 50},A{1 + i % 3},view,{1_700_000_000 + i}" for i in range(n)]
    return write(tmp_path, "many.csv", "\n".join(lines) + "\n")


def test_long_import_reports_progress_with_rows_per_second(tmp_path, catalogue, monkeypatch):
    """A progress line on stderr every --progress-every seconds (here: every callback, by a
    clock that advances 3 s a call), with rows read and the rate; stdout keeps the summary."""

    class Clocked(importing.ProgressPrinter):
        def __init__(self, write, interval: float = 2.0) -> None:
            ticks = iter(range(0, 10_000, 3))
            super().__init__(write, interval, clock=lambda: float(next(ticks)))

    monkeypatch.setattr(importing, "ProgressPrinter", Clocked)
    path = many_rows(tmp_path, 2 * importing.PROGRESS_EVERY + 10)
    out, err = io.StringIO(), io.StringIO()
    call_command("shopreco_import", str(path), "--format", "csv", "--product-field",
                 "external_id", "--batch-size", "500", stdout=out, stderr=err)
    lines = err.getvalue().splitlines()
    assert lines == [
        "  1,000 rows read in 3 s (333 rows/s); 1,000 written so far",
        "  2,000 rows read in 6 s (333 rows/s); 2,000 written so far",
    ]
    assert "rows/s" not in out.getvalue() and "2010 rows read" in out.getvalue()


def test_quick_and_quiet_imports_print_no_progress(tmp_path, catalogue):
    path = many_rows(tmp_path, 2 * importing.PROGRESS_EVERY + 10)
    for args in ([], ["-v", "0"], ["--progress-every", "0"]):
        out, err = io.StringIO(), io.StringIO()
        call_command("shopreco_import", str(path), "--format", "csv", "--product-field",
                     "external_id", *args, stdout=out, stderr=err)
        assert err.getvalue() == "", args  # under the 2 s default, or asked to be quiet
    assert "shopreco_recompute" not in out.getvalue()  # -v 0 after the first: summary only


def test_progress_printer_waits_an_interval_between_lines():
    clock = iter([0.0, 1.0, 2.5, 3.0, 5.0])
    lines: list[str] = []
    printer = importing.ProgressPrinter(lines.append, interval=2.0, clock=lambda: next(clock))
    report = importing.ImportReport(path="f", fmt="csv", dry_run=True)
    for rows in (1000, 2000, 3000, 4000):
        report.rows = rows
        printer(report)
    assert [line.split(" rows read")[0].strip() for line in lines] == ["2,000", "4,000"]
    assert all("dry run" in line for line in lines)
