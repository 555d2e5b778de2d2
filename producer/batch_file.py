"""Reading a batch file (JSON Lines or CSV, INTERFACE.md) into numbered lines, each parsed or refused."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from producer.validate import one_line
from shared.batch.models import BatchLine

#: a batch larger than this is refused whole: split it
MAX_BATCH_LINES = 100_000
_JSON_COLUMNS = ("options", "metadata", "images")


@dataclass(frozen=True)
class ParsedLine:
    """Line `number` (1-based, as an editor counts) of the file: the parsed line, or why it was refused."""

    number: int
    line: BatchLine | None = None
    error: str | None = None


def read_batch_file(path: Path) -> list[ParsedLine]:
    """Every non-blank line of the file at `path`, parsed; CSV when the name ends in .csv, else JSON Lines.

    Raises ValueError (one line) when the file as a whole cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    return parse_batch_text(text, as_csv=path.suffix.lower() == ".csv", source=str(path))


def parse_batch_text(text: str, as_csv: bool, source: str) -> list[ParsedLine]:
    """Every non-blank line of a batch file's `text` (CSV or JSON Lines), parsed; `source` names it in errors.

    Raises ValueError (one line) when it holds no job, or more than MAX_BATCH_LINES.
    """
    lines = parse_csv(text) if as_csv else parse_jsonl(text)
    if not lines:
        raise ValueError(f"{source} holds no jobs")
    if len(lines) > MAX_BATCH_LINES:
        raise ValueError(f"{source} holds {len(lines)} jobs; a batch takes at most {MAX_BATCH_LINES}")
    return lines


def parse_jsonl(text: str) -> list[ParsedLine]:
    """JSON Lines: one object a line; blank lines are skipped but counted."""
    parsed = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            parsed.append(ParsedLine(number, error=f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        parsed.append(_to_line(number, value))
    return parsed


def parse_csv(text: str) -> list[ParsedLine]:
    """CSV with a header of INTERFACE.md's keys; `options`, `metadata` (and `images`, as a JSON list or one URL)."""
    reader = csv.DictReader(io.StringIO(text))
    parsed = []
    for row in reader:
        number = reader.line_num
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        if None in row:
            parsed.append(ParsedLine(number, error="more fields than the header names"))
            continue
        fields: dict[str, Any] = {key: value for key, value in row.items() if value not in (None, "")}
        try:
            for column in _JSON_COLUMNS:
                if column in fields:
                    fields[column] = _json_cell(column, fields[column])
        except ValueError as exc:
            parsed.append(ParsedLine(number, error=str(exc)))
            continue
        parsed.append(_to_line(number, fields))
    return parsed


def _json_cell(column: str, cell: str) -> Any:
    if column == "images" and not cell.lstrip().startswith("["):
        return [cell]
    try:
        return json.loads(cell)
    except ValueError:
        raise ValueError(f"{column}: not JSON text") from None


def _to_line(number: int, value: Any) -> ParsedLine:
    if not isinstance(value, dict):
        return ParsedLine(number, error="not a JSON object")
    try:
        return ParsedLine(number, line=BatchLine.model_validate(value))
    except ValidationError as exc:
        return ParsedLine(number, error=one_line(exc))
