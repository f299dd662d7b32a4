"""CSV downloads of the tables a page shows, with the page's filters applied (`?format=csv` on the page's URL).

The CSV is read from the page's own HTML: the view runs its usual query and filters, renders every row (no paging),
and the tables marked `data-export="<name>"` become the file. So the file has the table's columns and rows by
construction, and no view keeps a second copy of its filtering or formatting.

    <table data-export="splits" data-export-group="ns/name" data-export-group-label="Split">  several tables, one file
    <th data-export-skip></th>  a column left out (actions)      <span data-export-skip> ▲</span>  text left out

Cells starting with = + - @ tab or CR get a leading ' so that a spreadsheet never runs them as a formula (names and
messages come from the cluster: untrusted text). The file is UTF-8 with a byte-order mark, which Excel needs to read
it as UTF-8.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from django.http import HttpRequest, HttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SPACE = re.compile(r"\s+")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def wants_csv(request: HttpRequest) -> bool:
    return request.GET.get("format") == "csv"


def safe_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@dataclass
class _Table:
    group: str | None
    group_label: str
    header: list[str] = field(default_factory=list)
    skip: set[int] = field(default_factory=set)
    rows: list[list[str]] = field(default_factory=list)


class _TableReader(HTMLParser):
    """The header and body cells of the tables marked data-export=name; nested tables are not expected."""

    def __init__(self, name: str) -> None:
        super().__init__(convert_charrefs=True)
        self.name = name
        self.tables: list[_Table] = []
        self.table: _Table | None = None
        self.section = ""  # thead / tbody
        self.row: list[str] | None = None
        self.row_spans = False  # a cell spanning columns: the "nothing here" row
        self.cell: list[str] | None = None
        self.cell_skipped = False
        self.skip_depth = 0  # inside an element marked data-export-skip

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "table" and attr.get("data-export") == self.name:
            self.table = _Table(attr.get("data-export-group"), attr.get("data-export-group-label") or "Group")
            self.tables.append(self.table)
            return
        if self.table is None:
            return
        if self.skip_depth and tag not in _VOID:
            self.skip_depth += 1
            return
        if tag in ("thead", "tbody"):
            self.section = tag
        elif tag == "tr":
            self.row, self.row_spans = [], False
        elif tag in ("th", "td") and self.row is not None:
            self.cell, self.cell_skipped = [], "data-export-skip" in attr
            if int(attr.get("colspan") or 1) > 1:
                self.row_spans = True
        elif "data-export-skip" in attr and tag not in _VOID:
            self.skip_depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.table is None:
            return
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag in ("th", "td") and self.cell is not None and self.row is not None:
            text = _SPACE.sub(" ", "".join(self.cell)).strip()
            if self.section == "thead" and self.cell_skipped:
                self.table.skip.add(len(self.row))
            self.row.append(text)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if self.section == "thead":
                self.table.header = self.row
            elif not self.row_spans:
                self.table.rows.append(self.row)
            self.row = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data: str) -> None:
        if self.table is not None and self.cell is not None and not self.skip_depth:
            self.cell.append(data)


def table_rows(html: str, name: str) -> list[list[str]]:
    """The header row, then every body row, of the tables named `name` in `html` (one header for all of them: the
    tables of one name share their columns; a group column first when they carry one)."""
    reader = _TableReader(name)
    reader.feed(html)
    reader.close()
    out: list[list[str]] = []
    for table in reader.tables:
        keep = [i for i in range(len(table.header)) if i not in table.skip]
        grouped = table.group is not None
        if not out:
            out.append(([table.group_label] if grouped else []) + [table.header[i] for i in keep])
        for row in table.rows:
            cells = [row[i] if i < len(row) else "" for i in keep]
            out.append(([table.group or ""] if grouped else []) + cells)
    return out


def csv_response(rows: list[list[str]], filename: str) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    response = HttpResponse("\ufeff" + buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def page_csv(page: HttpResponse, name: str, filename: str) -> HttpResponse:
    """The tables named `name` of a rendered page, as a CSV download."""
    return csv_response(table_rows(page.content.decode("utf-8"), name), filename)
