"""The run's CSV logs (``progress.csv``, ``eval.csv``): append a row, drop rows after a checkpoint.

Rows are appended with one ``write`` each. A process killed while appending can leave a last line
without its newline; :func:`truncate_csv` (run when a resumed run continues) drops it together
with the rows logged after the checkpoint, which the resumed run writes again.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def append_csv_row(path: Path, columns: Iterable[str], row: dict[str, Any]) -> None:
    """Append ``row`` (keys outside ``columns`` ignored) to ``path``, writing the header first if
    the file is new or empty."""
    columns = list(columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerow(row)
    with open(path, "a", newline="") as fh:
        fh.write(buf.getvalue())


def truncate_csv(path: Path, column: str, max_value: float) -> None:
    """Keep the header and the rows whose ``column`` is ``<= max_value``; drop a last line cut
    short by a kill (no newline) and rows whose ``column`` is not a number. Rewrites atomically,
    and only when something is dropped."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        original = fh.read().splitlines(keepends=True)
    lines = original[:-1] if original and not original[-1].endswith("\n") else original
    header = next(csv.reader(lines[:1]), None)
    if not header or column not in header:
        keep = []  # an empty file or a header cut short: the next row writes a new header
    else:
        index = header.index(column)
        keep = [lines[0]] + [line for line in lines[1:] if _at_most(line, index, max_value)]
    if keep == original and original:
        return
    if not keep:
        path.unlink()
        return
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as fh:
        fh.writelines(keep)
    os.replace(tmp, path)


def _at_most(line: str, index: int, max_value: float) -> bool:
    try:
        return float(next(csv.reader([line]))[index]) <= max_value
    except (IndexError, ValueError, StopIteration):
        return False
