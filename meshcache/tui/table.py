"""A table every view uses: sortable by any column, filterable, and cheap to refresh.

Rows come in as :class:`Row` values (display cells plus one sort value per column);
:meth:`SortableTable.set_rows` shows them sorted and filtered. A refresh that changes no cell
costs nothing, one that changes cells but not the row order updates those cells in place, and
only a change of the rows or their order rebuilds the table — keeping the selected row and the
scroll position. The sort column cycles with ``s``, the direction flips with ``r`` (bound by the
app, so they work in any terminal, tmux included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.cells import cell_len
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

Cell = str | Text


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its key, header label, alignment and a line for the help screen."""

    key: str
    label: str
    align: Literal["left", "right"] = "left"
    help: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    """A row: its key (stable across refreshes), cells, and one sort value per column."""

    key: str
    cells: tuple[Cell, ...]
    sort: tuple[Any, ...]

    def plain(self) -> str:
        return " ".join(c.plain if isinstance(c, Text) else c for c in self.cells).lower()


def _sort_key(value: Any) -> tuple[int, Any]:
    # None (unknown) always sorts after known values; numbers and text never compare.
    if value is None:
        return (2, 0)
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value))


class SortableTable(DataTable[Cell]):
    """A :class:`~textual.widgets.DataTable` of :class:`Row` values with sort and filter."""

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        sort_column: int = 0,
        reverse: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.spec = tuple(columns)
        self.sort_column = sort_column
        self.reverse = reverse
        self.filter_text = ""
        self._rows: list[Row] = []
        self._shown: list[Row] = []
        self._built = False
        self._mounted = False

    def on_mount(self) -> None:
        self._mounted = True
        self._rebuild()

    # -- what the app calls ----------------------------------------------------------------

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Show ``rows`` (sorted and filtered); see the module doc for what a refresh costs."""
        self._rows = list(rows)
        self._refresh_rows()

    def cycle_sort(self) -> str:
        """Sort by the next column; its label."""
        self.sort_column = (self.sort_column + 1) % len(self.spec)
        self._rebuild()
        return self.spec[self.sort_column].label

    def reverse_sort(self) -> bool:
        """Flip the sort direction; True when now descending."""
        self.reverse = not self.reverse
        self._rebuild()
        return self.reverse

    def set_filter(self, text: str) -> None:
        """Show only rows whose text contains ``text`` (any case); empty shows every row."""
        text = text.strip().lower()
        if text != self.filter_text:
            self.filter_text = text
            self._refresh_rows()

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor (None for an empty table)."""
        if not self._shown or not self.is_valid_row_index(self.cursor_row):
            return None
        return self._shown[self.cursor_row].key

    @property
    def shown_keys(self) -> list[str]:
        """The keys of the rows shown, in order."""
        return [r.key for r in self._shown]

    def select_key(self, key: str) -> bool:
        """Move the cursor to the row ``key``; False when it is not shown."""
        for index, row in enumerate(self._shown):
            if row.key == key:
                self.move_cursor(row=index, animate=False)
                return True
        return False

    # -- inside ------------------------------------------------------------------------------

    def _ordered(self) -> list[Row]:
        rows = self._rows
        if self.filter_text:
            rows = [r for r in rows if self.filter_text in r.plain()]
        column = self.sort_column
        known = [r for r in rows if r.sort[column] is not None]
        unknown = [r for r in rows if r.sort[column] is None]
        known.sort(key=lambda r: (_sort_key(r.sort[column]), r.key), reverse=self.reverse)
        return known + unknown

    def _label(self, index: int, column: Column) -> Text:
        label = column.label
        if index == self.sort_column:
            label += "▼" if self.reverse else "▲"
        return Text(label, justify=column.align)

    def _cell(self, index: int, cell: Cell) -> Cell:
        if self.spec[index].align == "right":
            if isinstance(cell, Text):
                cell = cell.copy()
                cell.justify = "right"
                return cell
            return Text(cell, justify="right")
        return cell

    def _rebuild(self) -> None:
        """Rebuild columns and rows (after a change of sort or of the row order)."""
        if not self._mounted:
            return
        selected = self.selected_key
        scroll = (self.scroll_x, self.scroll_y)
        self.clear(columns=True)
        for index, column in enumerate(self.spec):
            self.add_column(self._label(index, column), key=column.key)
        self._built = True
        self._fill(selected, scroll)

    def _fill(self, selected: str | None, scroll: tuple[float, float]) -> None:
        shown = self._ordered()
        self._shown = shown
        for row in shown:
            self.add_row(*(self._cell(i, c) for i, c in enumerate(row.cells)), key=row.key)
        self.scroll_to(*scroll, animate=False, immediate=True)
        if selected is not None:
            self.select_key(selected)  # scrolls further if the row is out of view

    def _refresh_rows(self) -> None:
        if not self._built:
            return
        shown = self._ordered()
        if [r.key for r in shown] != [r.key for r in self._shown]:
            selected = self.selected_key
            scroll = (self.scroll_x, self.scroll_y)
            self.clear()
            self._fill(selected, scroll)
            return
        columns = list(self.columns.values())
        for index, (old, new) in enumerate(zip(self._shown, shown, strict=True)):
            if old.cells == new.cells:
                continue
            for column, (a, b) in enumerate(zip(old.cells, new.cells, strict=True)):
                if a != b:
                    # Measuring every cell again is most of a refresh's cost: only when wider.
                    wider = cell_len(b.plain if isinstance(b, Text) else b) > (
                        columns[column].content_width
                    )
                    self.update_cell_at(
                        Coordinate(index, column), self._cell(column, b), update_width=wider
                    )
        self._shown = shown


__all__ = ["Cell", "Column", "Row", "SortableTable"]
