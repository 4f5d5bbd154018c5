"""Import ratings and events from files: the data-collection step for a real shop.

One family of parsers, one per format, shared by ``manage.py shopreco_import``,
``manage.py shopreco_evaluate`` (its ``--ratings`` file) and the demo's ``seed_demo``:

``csv`` (shopreco's own format)
    Header row with ``user``, ``product`` and at least one of ``score`` (a rating) or ``kind``
    (an event: ``view``, ``cart``, ``purchase`` or any kind in ``SHOPRECO["EVENT_WEIGHTS"]``);
    optional ``timestamp`` (ISO 8601 or Unix seconds). A row with a score is a rating, a row
    with only a kind is an event.
``movielens``
    ``ratings.csv`` (``userId,movieId,rating,timestamp``), the tab-separated ``u.data`` of
    MovieLens 100K or the ``::``-separated ``ratings.dat`` of MovieLens 1M/10M, or a directory
    holding one of them. The separator is read from the first line; a file without a header
    is read by position (user, movie, rating, timestamp).
``online-retail``
    The UCI Online Retail columns ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
    UnitPrice, CustomerID, Country``. Every line is a ``purchase`` event.

:func:`parse_ratings` reads the loosest layout, ``user,item,rating[,timestamp]`` by position
with an optional header (the evaluate command's ``csv``); it is not an import format, because
shopreco's own ``csv`` says more (events, named columns).

Users are matched by username ``<user_prefix><external id>`` (default ``ext-``) and created
with an unusable password when missing. Products are looked up through the configured product
model (``SHOPRECO_PRODUCT_MODEL``) by ``product_field`` (default: the primary key), so any
host catalogue works; the field's values must be unique.

Errors come in two kinds:

* **Per-row** (the row is skipped, valid rows are kept, the first few are reported with their
  line numbers): wrong number of fields, missing user or product, unparsable number or date,
  score outside the configured scale or not on its step, unknown event kind, invalid user id,
  unknown or ambiguous product. Rows **dropped** on purpose are counted separately:
  duplicates (for ratings the latest by timestamp wins, then the later line; events identical
  in user, product, kind and time, also against events already in the database, so importing
  a file twice adds nothing), cancelled invoices (``C...``), non-positive quantities, guest
  rows without a customer id and non-product stock codes (postage, fees).
* **Fatal** (nothing is written, :class:`FatalImportError` names the line): the file cannot be
  opened, is empty, is not valid in the given encoding, has a header without the required
  columns (including a truncated header), contains NUL bytes (binary data), or is
  structurally broken CSV (a field over the size limit), and any per-row error in ``strict``
  mode.

The file is streamed line by line and written in batches inside one transaction; memory grows
only with the number of distinct (user, product) ratings and distinct events, not the file.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import ngettext

from shopreco.conf import get_product_model, reco_settings

FORMATS = ("csv", "movielens", "online-retail")
DEFAULT_USER_PREFIX = "ext-"
MAX_REPORTED = 10
BATCH_SIZE = 2000
PROGRESS_EVERY = 1000  # rows read between calls of an import's progress callback
# UCI Online Retail stock codes that are charges, not products.
NON_PRODUCT_CODES = {"POST", "DOT", "M", "D", "C2", "CRUK", "S", "B", "PADS", "AMAZONFEE",
                     "BANK CHARGES", "ADJUST", "ADJUST2"}
RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                  "UnitPrice", "CustomerID", "Country"]
RETAIL_REQUIRED = ["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "CustomerID"]
MOVIELENS_COLUMNS = ["userId", "movieId", "rating", "timestamp"]
_USER_ID = re.compile(r"^[\w.@+-]+$")
_FLOAT_INT = re.compile(r"^(\d+)\.0*$")


class FatalImportError(Exception):
    """The file as a whole cannot be imported; nothing has been written."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message, self.line = message, line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass
class Record:
    """One parsed row: a rating (``score`` set) or an event (``kind`` set)."""

    line: int
    user: str
    product: str
    score: float | None = None
    kind: str | None = None
    at: datetime | None = None


@dataclass
class Skip:
    """A row not imported: ``reject=True`` for bad data, ``False`` for a deliberate drop."""

    line: int
    reason: str
    message: str = ""
    reject: bool = True


@dataclass
class ImportReport:
    path: str
    fmt: str
    dry_run: bool = False
    rows: int = 0
    ratings: int = 0
    events: int = 0
    users_created: int = 0
    dropped: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    rejects: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def add_skip(self, skip: Skip) -> None:
        if not skip.reject:
            self.dropped[skip.reason] += 1
            return
        self.rejected[skip.reason] += 1
        self.rejects.append((skip.line, skip.message or skip.reason))
        if len(self.rejects) > MAX_REPORTED:
            # Rejects found at batch time arrive after later parse rejects: keep the earliest.
            self.rejects.sort()
            del self.rejects[MAX_REPORTED:]

    def summary(self) -> str:
        verb = "Would import" if self.dry_run else "Imported"
        lines = [
            f"{verb} {self.path} ({self.fmt}): {_counted(self.rows, 'row')} read, "
            f"{_counted(self.ratings, 'rating')} and {_counted(self.events, 'event')} kept, "
            f"{_counted(self.users_created, 'user')} created, "
            f"{sum(self.dropped.values())} dropped, {self.rejected_total} rejected."
        ]
        for reason, count in sorted(self.dropped.items()):
            lines.append(f"  dropped {count}: {reason}")
        for reason, count in sorted(self.rejected.items()):
            lines.append(f"  rejected {count}: {reason}")
        if self.rejects:
            lines.append("First rejected rows:")
            lines.extend(f"  line {line}: {message}" for line, message in sorted(self.rejects))
        if self.dry_run:
            lines.append("Dry run: nothing was written.")
        return "\n".join(lines)


def _counted(n: int, singular: str) -> str:
    return f"{n} {ngettext(singular, f'{singular}s', n)}"


ProgressCallback = Callable[[ImportReport], None]


class ProgressPrinter:
    """A progress callback for :func:`import_file` that writes a line, at most every
    ``interval`` seconds, on the rows read so far and how fast: a large file takes a while,
    and silence looks like a hang. ``write`` takes one line (e.g. a command's
    ``stderr.write``); the first line waits one interval, so quick imports print none."""

    def __init__(self, write: Callable[[str], None], interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.clock = write, interval, clock
        self.started = self.last = clock()

    def __call__(self, report: ImportReport) -> None:
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        self.write(
            f"  {report.rows:,} rows read in {elapsed:.0f} s ({report.rows / elapsed:,.0f} "
            f"rows/s); {report.ratings + report.events:,} written so far"
            + (" (rolled back at the end: dry run)" if report.dry_run else "")
        )


# --- reading -------------------------------------------------------------------------------


def _ascii_compatible(encoding: str) -> bool:
    try:
        return "\n,\t".encode(encoding) == b"\n,\t"
    except (LookupError, UnicodeError):
        return False


def read_lines(path: Path | str, encoding: str = "utf-8") -> Iterator[str]:
    """Decoded lines, streamed; a decoding error is fatal and names its line."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise FatalImportError(f"unknown encoding {encoding!r}") from None
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise FatalImportError(f"cannot open {path}: {exc.strerror or exc}") from None
    with handle:
        head = handle.read(4)
        handle.seek(0)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and "16" not in encoding:
            raise FatalImportError("the file is UTF-16 encoded; pass --encoding utf-16", line=1)
        if not _ascii_compatible(encoding):
            text = codecs.getreader(encoding)(handle)
            number = 0
            try:
                for number, line in enumerate(text, 1):  # noqa: B007 - used in the except
                    yield line
            except UnicodeDecodeError as exc:
                raise FatalImportError(f"not valid {encoding}: {exc.reason}", number + 1) from None
            return
        first_encoding = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
        for number, raw in enumerate(handle, 1):
            if b"\x00" in raw:
                raise FatalImportError(
                    f"NUL byte at column {raw.index(0) + 1}: a binary file, or UTF-16 without "
                    "a byte-order mark?", number)
            try:
                yield raw.decode(first_encoding if number == 1 else encoding)
            except UnicodeDecodeError as exc:
                raise FatalImportError(
                    f"not valid {encoding} (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); convert the file or pass --encoding, e.g. latin-1",
                    number,
                ) from None


def csv_rows(
    path: Path | str, encoding: str = "utf-8", delimiter: str = ","
) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) per CSV record; blank lines skipped, broken CSV fatal.

    A separator longer than one character (MovieLens' ``::``) splits each line as it is: the
    csv module takes one character, and such files never quote."""
    if len(delimiter) > 1:
        for number, text in enumerate(read_lines(path, encoding), 1):
            row = text.rstrip("\r\n").split(delimiter)
            if any(cell.strip() for cell in row):
                yield number, row
        return
    reader = csv.reader(read_lines(path, encoding), delimiter=delimiter)
    previous = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FatalImportError(f"malformed CSV: {exc}", reader.line_num) from None
        start, previous = previous + 1, reader.line_num
        if row and any(cell.strip() for cell in row):
            yield start, row


def read_header(
    rows: Iterator[tuple[int, list[str]]], required: list[str], fmt: str
) -> tuple[dict[str, int], int]:
    """Read the header: (lower-cased column name -> index, width). A missing or truncated
    header (missing columns) is fatal, so a wrong file stops before any row is read."""
    try:
        line, header = next(rows)
    except StopIteration:
        raise FatalImportError(
            f"the file is empty; a {fmt} file starts with a header: {', '.join(required)}", 1
        ) from None
    names = [h.strip() for h in header]
    index = {name.lower(): i for i, name in enumerate(names)}
    missing = [c for c in required if c.lower() not in index]
    if missing:
        hint = ""
        last = names[-1].lower() if names else ""
        if last and any(c.lower().startswith(last) and c.lower() != last for c in required):
            hint = " (the header looks truncated)"
        raise FatalImportError(
            f"missing column(s) {', '.join(missing)}{hint}; found: {', '.join(names) or 'none'}",
            line,
        )
    return index, len(names)


def _width_error(line: int, expected: int, found: int) -> Skip:
    what = " (truncated row?)" if found < expected else ""
    return Skip(line, "wrong number of fields", f"expected {expected} fields, found {found}{what}")


def parse_time(value: str) -> datetime:
    """ISO 8601, Unix seconds, or the US ``m/d/Y H:M`` of spreadsheet exports; naive -> UTC."""
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return datetime.fromtimestamp(float(value), tz=UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        for pattern in ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S"):
            try:
                moment = datetime.strptime(value, pattern)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"time {value!r} is not ISO 8601 or Unix seconds") from None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def _number(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} {value!r} is not a number")
    return number


def _clean_user(value: str) -> str:
    value = value.strip()
    match = _FLOAT_INT.match(value)  # spreadsheet exports print ids as 17850.0
    return match.group(1) if match else value


# --- formats -------------------------------------------------------------------------------


def parse_csv(path: Path | str, encoding: str = "utf-8") -> Iterator[Record | Skip]:
    """shopreco's own format (see the module docstring): columns by name, so a shop's export
    can carry extra columns in any order."""
    rows = csv_rows(path, encoding)
    index, width = read_header(rows, ["user", "product"], "csv")
    if "score" not in index and "kind" not in index:
        raise FatalImportError("missing column: the header needs 'score' or 'kind' (or both)", 1)
    time_col = next((index[c] for c in ("timestamp", "created_at", "time") if c in index), None)
    for line, row in rows:
        if len(row) != width:
            yield _width_error(line, width, len(row))
            continue
        user, product = _clean_user(row[index["user"]]), row[index["product"]].strip()
        if not user or not product:
            yield Skip(line, "missing user or product", "user and product must not be empty")
            continue
        score_text = row[index["score"]].strip() if "score" in index else ""
        kind = row[index["kind"]].strip() if "kind" in index else ""
        try:
            at = parse_time(row[time_col]) if time_col is not None and row[time_col].strip() \
                else None
            score = _number(score_text, "score") if score_text else None
        except (ValueError, OverflowError, OSError) as exc:
            yield Skip(line, "unparsable value", str(exc))
            continue
        if score is None and not kind:
            yield Skip(line, "neither score nor kind", "row has neither a score nor a kind")
            continue
        yield Record(line, user, product, score=score, kind=None if score is not None else kind,
                     at=at)


def find_movielens_ratings(path: Path | str) -> Path:
    """The ratings file of a MovieLens directory (``ratings.csv``, ``ratings.dat`` or
    ``u.data``); a file path is returned as it is."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in ("ratings.csv", "ratings.dat", "u.data"):
        if (path / name).is_file():
            return path / name
    raise FatalImportError(f"{path} holds neither ratings.csv, ratings.dat nor u.data")


def sniff_separator(path: Path | str, encoding: str = "utf-8") -> str:
    """The separator of a ratings file, from its first non-blank line: ``::`` (MovieLens
    1M/10M), a tab (MovieLens 100K) or else a comma. By content, not name, so a renamed or
    exported file reads the same."""
    lines = read_lines(path, encoding)
    try:
        for text in lines:
            if text.strip():
                return "::" if "::" in text else "\t" if "\t" in text else ","
    finally:
        lines.close()
    return ","


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rating_records(
    path: Path | str, encoding: str, fmt: str, columns: list[str] | None
) -> Iterator[Record | Skip]:
    """``user, item, rating[, timestamp]`` rows, the layout most rating files share.

    A first row without a numeric rating field is a header. With ``columns`` (named
    layouts such as MovieLens') it must name them (missing ones are fatal), the columns are
    found by name and every row has the header's width; a headerless file is read by
    position, four fields a row. Without ``columns`` a header is skipped and rows are read by
    position: at least three fields, the fourth a timestamp, any further ones ignored.
    """
    names = columns or ["user", "item", "rating", "timestamp"]
    rows = csv_rows(path, encoding, delimiter=sniff_separator(path, encoding))
    try:
        first = next(rows)
    except StopIteration:
        raise FatalImportError(
            f"the file is empty; a {fmt} file has rows of {', '.join(names)}", 1
        ) from None
    header = len(first[1]) < 3 or not _is_number(first[1][2].strip())
    cols, min_width, max_width = [0, 1, 2, 3], 4, 4
    if columns and header:
        index, min_width = read_header(chain([first], rows), columns, fmt)
        cols, max_width = [index[name.lower()] for name in columns], min_width
    elif not columns:
        min_width, max_width = 3, None
        if header and len(first[1]) < min_width:
            yield _width_error(first[0], min_width, len(first[1]))
    if not header:
        rows = chain([first], rows)
    for line, row in rows:
        if len(row) < min_width or (max_width is not None and len(row) > max_width):
            yield _width_error(line, min_width if len(row) < min_width else max_width, len(row))
            continue
        user, product = row[cols[0]].strip(), row[cols[1]].strip()
        if not user or not product:
            yield Skip(line, "missing user or product",
                       f"{names[0]} and {names[1]} must not be empty")
            continue
        stamp = row[cols[3]].strip() if len(row) > cols[3] else ""
        try:
            score = _number(row[cols[2]].strip(), names[2])
            at = parse_time(stamp) if stamp else None
        except (ValueError, OverflowError, OSError) as exc:
            yield Skip(line, "unparsable value", str(exc))
            continue
        yield Record(line, user, product, score=score, at=at)


def parse_movielens(path: Path | str, encoding: str = "utf-8") -> Iterator[Record | Skip]:
    """Ratings of a MovieLens file or directory (see the module docstring)."""
    return _rating_records(find_movielens_ratings(path), encoding, "MovieLens ratings",
                           MOVIELENS_COLUMNS)


def parse_ratings(path: Path | str, encoding: str = "utf-8") -> Iterator[Record | Skip]:
    """``user,item,rating[,timestamp]`` by position, comma-, tab- or ``::``-separated, with an
    optional header: for rating files from elsewhere, which agree on little else."""
    return _rating_records(path, encoding, "ratings", None)


def retail_rows(
    path: Path | str, encoding: str = "utf-8"
) -> Iterator[tuple[int, dict[str, str] | Skip]]:
    """(line, column -> value) per Online Retail row, or a :class:`Skip` for a row of the wrong
    width: the purchases parser and the demo's catalogue reader read the same file."""
    rows = csv_rows(path, encoding)
    index, width = read_header(rows, RETAIL_REQUIRED, "Online Retail")
    for line, row in rows:
        if len(row) != width:
            yield line, _width_error(line, width, len(row))
            continue
        yield line, {c: row[index[c.lower()]].strip() for c in RETAIL_COLUMNS if c.lower() in index}


def parse_online_retail(path: Path | str, encoding: str = "utf-8") -> Iterator[Record | Skip]:
    """Invoice lines as ``purchase`` events; what is not a sale to a known customer is dropped,
    not rejected, since the data set is full of them by design."""
    for line, row in retail_rows(path, encoding):
        if isinstance(row, Skip):
            yield row
            continue
        code = row["StockCode"]
        if row["InvoiceNo"].upper().startswith("C"):
            yield Skip(line, "cancelled invoice", reject=False)
            continue
        if not code:
            yield Skip(line, "missing stock code", "StockCode is empty")
            continue
        if code.upper() in NON_PRODUCT_CODES:
            yield Skip(line, "not a product (postage, fees)", reject=False)
            continue
        try:
            quantity = _number(row["Quantity"], "Quantity")
            at = parse_time(row["InvoiceDate"])
        except (ValueError, OverflowError, OSError) as exc:
            yield Skip(line, "unparsable value", str(exc))
            continue
        if quantity <= 0:
            yield Skip(line, "non-positive quantity", reject=False)
            continue
        customer = _clean_user(row["CustomerID"])
        if not customer:
            yield Skip(line, "guest purchase (no CustomerID)", reject=False)
            continue
        yield Record(line, customer, code, kind="purchase", at=at)


PARSERS = {"csv": parse_csv, "movielens": parse_movielens, "online-retail": parse_online_retail}


# --- writing -------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _Importer:
    """Resolves users and products batch by batch and writes inside the caller's transaction."""

    def __init__(self, report: ImportReport, product_field: str, user_prefix: str,
                 round_scores: bool) -> None:
        # Here, not at the top: the parsers of this module serve code without Django's app
        # registry (the benchmarks, the demo's readers), and the models need it.
        from shopreco.models import Interaction, Rating

        self.Rating, self.Interaction = Rating, Interaction
        self.report = report
        self.model = get_product_model()
        try:
            self.field = (self.model._meta.pk if product_field == "pk"
                          else self.model._meta.get_field(product_field))
        except FieldDoesNotExist:
            raise FatalImportError(
                f"product field {product_field!r} does not exist on "
                f"{self.model._meta.label}; use 'pk' or one of its fields"
            ) from None
        if not getattr(self.field, "concrete", False) or self.field.many_to_many:
            raise FatalImportError(f"product field {product_field!r} is not a column")
        self.field_label = f"{self.model._meta.label} with {self.field.name}"
        self.user_prefix = user_prefix
        self.round_scores = round_scores
        self.low, self.high = float(reco_settings.RATING_MIN), float(reco_settings.RATING_MAX)
        self.step = 0.5 if reco_settings.RATING_HALF_STARS else 1.0
        self.kinds = set(reco_settings.EVENT_WEIGHTS)
        self.products: dict[str, Any] = {}  # key -> pk, or a Skip template when unusable
        self.users: dict[str, int] = {}
        self.rating_seen: dict[tuple, tuple[datetime, int]] = {}
        self.event_seen: set[tuple] = set()
        self.now = timezone.now()

    def check(self, record: Record) -> Skip | None:
        """Per-row checks that need settings: the rating scale, event kinds, user ids."""
        if len(record.user) + len(self.user_prefix) > 150 or not _USER_ID.match(record.user):
            return Skip(record.line, "invalid user id",
                        f"user id {record.user!r} has characters not allowed in a username")
        if record.score is not None:
            score = record.score
            if self.round_scores:
                score = math.floor((score - self.low) / self.step + 0.5) * self.step + self.low
            if not self.low <= score <= self.high:
                return Skip(record.line, "score outside the scale",
                            f"score {_fmt(record.score)} outside "
                            f"{_fmt(self.low)}-{_fmt(self.high)}")
            if not ((score - self.low) / self.step).is_integer():
                return Skip(record.line, "score not on the scale's step",
                            f"score {_fmt(score)} is not a multiple of {_fmt(self.step)}")
            record.score = score
        elif record.kind not in self.kinds:
            return Skip(record.line, "unknown event kind",
                        f"unknown event kind {record.kind!r} "
                        f"(expected {', '.join(sorted(self.kinds))})")
        return None

    def _resolve_products(self, keys: set[str]) -> None:
        converted: dict[Any, list[str]] = {}
        for key in keys - self.products.keys():
            try:
                value = self.field.to_python(key)
            except ValidationError as exc:
                self.products[key] = Skip(0, "invalid product id",
                                          f"product {key!r} is not a valid {self.field.name}: "
                                          f"{' '.join(exc.messages)}")
                continue
            converted.setdefault(value, []).append(key)
        values = list(converted)
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            found = Counter()
            pks = {}
            for value, pk in self.model._base_manager.filter(
                **{f"{self.field.attname}__in": chunk}
            ).values_list(self.field.attname, "pk"):
                found[value] += 1
                pks[value] = pk
            for value in chunk:
                for key in converted[value]:
                    if found[value] == 1:
                        self.products[key] = pks[value]
                    elif found[value] > 1:
                        self.products[key] = Skip(0, "ambiguous product",
                                                  f"{found[value]} products have "
                                                  f"{self.field.name}={key!r}")
                    else:
                        self.products[key] = Skip(0, "unknown product",
                                                  f"unknown product {key!r} (no "
                                                  f"{self.field_label}={key!r})")

    def _resolve_users(self, ids: set[str]) -> None:
        user_model = get_user_model()
        wanted = {self.user_prefix + i: i for i in ids - self.users.keys()}
        names = list(wanted)
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            for username, pk in user_model._default_manager.filter(
                username__in=chunk
            ).values_list("username", "pk"):
                self.users[wanted[username]] = pk
            missing = [n for n in chunk if wanted[n] not in self.users]
            if missing:
                # One unusable hash for the batch: it is never checked, and generating a random
                # one per user dominated the import of files with many new users.
                unusable = make_password(None)
                user_model._default_manager.bulk_create(
                    [user_model(username=n, password=unusable) for n in missing]
                )
                self.report.users_created += len(missing)
                for username, pk in user_model._default_manager.filter(
                    username__in=missing
                ).values_list("username", "pk"):
                    self.users[wanted[username]] = pk

    def flush(self, batch: list[Record]) -> None:
        if not batch:
            return
        self._resolve_products({r.product for r in batch})
        known = []
        for record in batch:
            product = self.products[record.product]
            if isinstance(product, Skip):
                self.report.add_skip(Skip(record.line, product.reason, product.message))
            else:
                known.append(record)
        # Users only for rows that will be written, so a file of unknown products creates none.
        self._resolve_users({r.user for r in known})
        ratings: dict[tuple, Any] = {}
        events: dict[tuple, Any] = {}
        for record in known:
            product = self.products[record.product]
            user = self.users[record.user]
            at = record.at or self.now
            if record.score is not None:
                pair = (user, product)
                seen = self.rating_seen.get(pair)
                if seen is not None:
                    self.report.add_skip(Skip(record.line, "duplicate rating (kept the latest)",
                                              reject=False))
                    if seen > (at, record.line):
                        continue
                self.rating_seen[pair] = (at, record.line)
                ratings[pair] = self.Rating(user_id=user, product_id=product,
                                            score=record.score, created_at=at)
            else:
                key = (user, product, record.kind, at)
                if key in self.event_seen:
                    self.report.add_skip(Skip(record.line, "duplicate event", reject=False))
                    continue
                self.event_seen.add(key)
                events[key] = (record.line, self.Interaction(
                    user_id=user, product_id=product, kind=record.kind, created_at=at))
        if events:
            existing = set(self.Interaction.objects.filter(
                user_id__in={k[0] for k in events}, created_at__in={k[3] for k in events}
            ).values_list("user_id", "product_id", "kind", "created_at"))
            for key in existing & events.keys():
                self.report.add_skip(Skip(events.pop(key)[0], "event already in the database",
                                          reject=False))
            self.Interaction.objects.bulk_create([obj for _, obj in events.values()])
            self.report.events += len(events)
        if ratings:
            self.Rating.objects.bulk_create(
                list(ratings.values()), update_conflicts=True, unique_fields=["user", "product"],
                update_fields=["score", "created_at", "updated_at"],
            )
        self.report.ratings = len(self.rating_seen)


def import_file(
    path: Path | str,
    fmt: str,
    *,
    product_field: str = "pk",
    user_prefix: str = DEFAULT_USER_PREFIX,
    encoding: str = "utf-8",
    round_scores: bool = False,
    strict: bool = False,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import one file; all-or-nothing on a fatal error (raises :class:`FatalImportError`).

    ``round_scores`` rounds scores half up to the configured step first (MovieLens half stars
    into a 1-5 whole-star shop); ``strict`` turns any per-row error into a fatal one;
    ``dry_run`` does all the work, reports and rolls back. ``progress`` is called with the
    report so far every ``PROGRESS_EVERY`` rows read (e.g. a :class:`ProgressPrinter`).
    """
    if fmt not in PARSERS:
        raise FatalImportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    report = ImportReport(path=str(path), fmt=fmt, dry_run=dry_run)
    with transaction.atomic():
        importer = _Importer(report, product_field, user_prefix, round_scores)
        batch: list[Record] = []
        for item in PARSERS[fmt](path, encoding):
            if progress is not None and report.rows and not report.rows % PROGRESS_EVERY:
                progress(report)  # the rows counted so far are all handled
            report.rows += 1
            if isinstance(item, Record):
                problem = importer.check(item)
                if problem is None:
                    batch.append(item)
                    if len(batch) >= batch_size:
                        importer.flush(batch)
                        batch = []
                    continue
                item = problem
            report.add_skip(item)
        importer.flush(batch)
        if strict and report.rejects:
            line, message = min(report.rejects)
            raise FatalImportError(
                f"{message} ({report.rejected_total} rows rejected; strict mode writes nothing)",
                line,
            )
        if dry_run:
            transaction.set_rollback(True)
    return report
