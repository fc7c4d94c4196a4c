"""Every user-facing error message of the product, in one place.

Each message says where (file, row, column or JSON path), what was expected, what was found and
how to fix it. The CLI prints ``str(error)`` as one line (plus the hint); the HTTP service turns
:class:`InputError` problems into field-level 400 answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One problem with one value of the input."""

    code: str
    message: str
    row: int | None = None  # 1-based data row (header excluded); JSONL: line number
    column: str | None = None
    value: str | None = None

    def as_dict(self) -> dict:
        return {"code": self.code, "row": self.row, "column": self.column, "message": self.message}


class JourneyError(Exception):
    """Base class: a problem the user can fix. ``hint`` says how."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, then the hint
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message


class InputError(JourneyError):
    """Invalid events: carries every problem found (not just the first)."""

    def __init__(self, source: str, problems: list[Problem], hint: str = "", total: int | None = None):
        self.source = source
        self.problems = problems
        total = len(problems) if total is None else total
        shown = "; ".join(p.message for p in problems[:5])
        more = f" (and {total - 5} more)" if total > 5 else ""
        super().__init__(f"{source}: {total} problem(s): {shown}{more}.", hint)


class ConfigError(JourneyError):
    """Bad settings, taxonomy or playbook file."""


class ModelError(JourneyError):
    """A model cannot be found, loaded or used."""


class ProfileStoreError(JourneyError):
    """The profile store's backend (SQLite file, Redis server) failed or cannot be reached."""


def profile_store_failed(where: str, exc: BaseException) -> ProfileStoreError:
    return ProfileStoreError(f"profile store {where}: {type(exc).__name__}: {exc}",
                             "check JOURNEY_PROFILE_STORE (sqlite:///PATH, redis://HOST:PORT/DB, or none to serve without profiles).")


# ---- message catalogue (one function per message; tests match on these texts) -------------------

def show(value: object) -> str:
    """A value as the user wrote it (numpy scalars as plain Python numbers)."""
    return repr(value.item() if hasattr(value, "item") else value)


def where(source: str, row: int | None = None, column: str | None = None) -> str:
    parts = [source]
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)


def file_not_found(path: str) -> JourneyError:
    return JourneyError(f"{path}: file or folder not found.", "check the path; relative paths start at the current directory.")


def unsupported_format(path: str) -> JourneyError:
    return JourneyError(
        f"{path}: unsupported file type.",
        "use .parquet, .csv, .csv.gz, .jsonl, .jsonl.gz or .ndjson (or a folder of such files).",
    )


def unreadable_file(path: str, kind: str, reason: str) -> JourneyError:
    return JourneyError(f"{path}: cannot be read as {kind}: {reason}.", f"check that the file is valid {kind} and not truncated.")


def missing_columns(source: str, missing: list[str], found: list[str]) -> JourneyError:
    return JourneyError(
        f"{source}: missing required column(s) {', '.join(repr(m) for m in missing)}; found columns {found}.",
        "events need customer_id, timestamp and event_type (channel, value and campaign are optional); rename your columns.",
    )


def no_events(source: str) -> JourneyError:
    return JourneyError(f"{source}: contains no event rows.", "pass a file with at least one event.")


def problem_missing(source: str, row: int, column: str) -> Problem:
    return Problem("missing", f"{where(source, row, column)}: expected a non-empty value, got nothing", row, column)


def problem_bad_timestamp(source: str, row: int, column: str, value: object) -> Problem:
    return Problem(
        "bad_timestamp",
        f"{where(source, row, column)}: expected an ISO 8601 timestamp such as 2025-03-01T14:30:00+01:00, got {show(value)}",
        row, column, str(value),
    )


def problem_time_out_of_range(source: str, row: int, column: str, value: object, low: str, high: str) -> Problem:
    return Problem(
        "timestamp_out_of_range",
        f"{where(source, row, column)}: expected a time from {low} to {high} (UTC), got {show(value)}",
        row, column, str(value),
    )


def problem_text_too_long(source: str, row: int, column: str, limit: int, length: int) -> Problem:
    return Problem("text_too_long", f"{where(source, row, column)}: expected at most {limit} characters, got {length}", row, column)


def problem_bad_character(source: str, row: int, column: str, value: object) -> Problem:
    return Problem(
        "bad_character",
        f"{where(source, row, column)}: expected text without control or bidirectional-override characters, got {show(value)[:80]}",
        row, column,
    )


def problem_bad_number(source: str, row: int, column: str, value: object) -> Problem:
    return Problem("bad_number", f"{where(source, row, column)}: expected a finite number, got {show(value)}", row, column, str(value))


def problem_negative_value(source: str, row: int, column: str, value: object) -> Problem:
    return Problem("negative_value", f"{where(source, row, column)}: expected a value >= 0, got {show(value)}", row, column, str(value))


def problem_unknown_event_type(source: str, row: int, column: str, value: object, taxonomy: str) -> Problem:
    return Problem(
        "unknown_event_type",
        f"{where(source, row, column)}: event type {value!r} is not in taxonomy '{taxonomy}'",
        row, column, str(value),
    )


def unknown_event_types_hint(unknown: list[str], taxonomy: str) -> str:
    return (
        f"unknown event types {sorted(unknown)[:20]}: add them to a custom taxonomy TOML (--taxonomy FILE), "
        f"or map them all to one stage with --unknown-stage STAGE (taxonomy '{taxonomy}')."
    )


def bad_events_hint() -> str:
    return "fix the listed rows, or pass --rejects PATH to divert invalid rows to a rejects file and continue."


def convert_source_invalid(dataset: str, path: str, expected: str, found: str) -> JourneyError:
    """A ``journey convert`` source lacks a file, a column or has a value the converter cannot read."""
    return JourneyError(
        f"{path}: cannot convert as {dataset}: expected {expected}; found {found}.",
        f"pass the original {dataset} download (file names and columns as in data/real/README.md) to `journey convert {dataset} SRC`.",
    )


# ---- data sufficiency (the protocol ladder, features/protocols.py) and the promotion gate ---------

def days(x: float) -> str:
    """Days as the messages show them: whole days when whole, else one decimal."""
    return f"{x:.0f}" if abs(x - round(x)) < 0.05 else f"{x:.1f}"


def needs_history_before_test(missing: float, test0: str, warmup: float, horizon: float, need: float, history: float) -> str:
    return (
        f"needs {days(missing)} more days of history before the first test cutoff ({test0}): a training cutoff needs a "
        f"{days(warmup)}-day warm-up and its {days(horizon)}-day label window must end by the test cutoff "
        f"({days(need)} days in all), the log has {days(history)}"
    )


def needs_events_after_test_from(missing: float, test_from: str, horizon: float, window_end: str, log_end: str) -> str:
    return (
        f"needs {days(missing)} more days of events after --test-from {test_from}: the first test cutoff's "
        f"{days(horizon)}-day label window ends {window_end}, the log ends {log_end}"
    )


def needs_longer_log(missing: float, need: float, span: float, warmup: float, horizon: float, events: str) -> str:
    return (
        f"needs {days(missing)} more days of events: a {days(warmup)}-day warm-up, a {days(horizon)}-day training label "
        f"window and a {days(horizon)}-day test label window take {days(need)} days, the log covers {days(span)} "
        f"day(s) (events {events})"
    )


def needs_class_rows(need: int, what: str, part: str, have: int) -> str:
    """``what``: "positive", "negative" or "outside the most frequent stage"."""
    if what.startswith("outside"):
        return f"needs at least {need:,} {part} rows {what}, has {have:,}"
    return f"needs at least {need:,} {what} {part} rows, has {have:,}"


def leakage_note(horizon: float) -> str:
    return (
        f"no purge: training label windows ({days(horizon)} days) overlap the validation slice's, so early stopping, "
        "calibration and the model-vs-rule choice can reward memorising customers (leakage risk; the test stays honest)"
    )


def no_task_can_train(reasons: dict[str, str]) -> JourneyError:
    return JourneyError(
        "no task can train on this data: " + "; ".join(f"{task}: {why}" for task, why in reasons.items()) + ".",
        "`journey check --events PATH` shows the facts per task; pass a longer log, shorter --horizon TASK=DAYS values "
        "or another --test-from date.",
    )


# ---- batch files: lines that are not rows, outputs that would lose data (issue 13 defect 9) ------

def _excerpt(text: str, limit: int = 80) -> str:
    text = text.rstrip("\r\n")
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def problem_field_count(source: str, row: int, expected: int, got: int, text: str) -> Problem:
    return Problem("field_count", f"{where(source, row)}: expected {expected} fields as in the header, got {got}: {_excerpt(text)}", row)


def problem_unclosed_quote(source: str, row: int, text: str) -> Problem:
    return Problem(
        "unclosed_quote",
        f"{where(source, row)}: expected one line per row, but a double quote (\") opens a value that does not close on "
        f"this line (it would swallow the next rows): {_excerpt(text)}; remove the stray quote or double it (\"\")",
        row,
    )


def problem_not_utf8(source: str, row: int, byte: int, position: int) -> Problem:
    return Problem("not_utf8", f"{where(source, row)}: expected UTF-8 text, got byte 0x{byte:02x} at byte {position + 1} of the row; "
                   "save the file as UTF-8", row)


def problem_bad_csv_row(source: str, row: int, reason: str, text: str) -> Problem:
    return Problem("bad_csv_row", f"{where(source, row)}: expected a CSV row, got one that cannot be read ({reason}): {_excerpt(text)}", row)


def output_is_input(flag: str, path: object, events: object) -> JourneyError:
    return JourneyError(f"{flag} {path}: is the input --events {events}; writing it would overwrite the events.",
                        f"write {flag} to another file.")


def output_inside_input(flag: str, path: object, events: object) -> JourneyError:
    return JourneyError(f"{flag} {path}: is inside the input folder --events {events}; the next run would read it as events.",
                        f"write {flag} outside the events folder.")


def outputs_collide(flag: str, path: object, other_flag: str) -> JourneyError:
    return JourneyError(f"{flag} {path}: is also {other_flag}; one file would overwrite the other.",
                        f"give {flag} and {other_flag} different files.")


def output_not_writable(flag: str, path: object, reason: str) -> JourneyError:
    return JourneyError(f"{flag} {path}: cannot be written: {reason}.",
                        "choose a folder you can write to (or fix its permissions) and a file name that is not a folder.")


# ---- the Spark engine's inputs and outputs beyond local files --------------------------------------

def events_not_found_spark(path: str) -> JourneyError:
    return JourneyError(f"{path}: no file, folder or table of that name.",
                        "check the path; with --engine spark, --events may also name a table of the Spark catalog or a URI "
                        "Spark reads (hdfs://, s3a://).")


def output_folder_not_ours(flag: str, path: object) -> JourneyError:
    return JourneyError(f"{flag} {path}: is a folder that holds more than Parquet part files; replacing it would delete them.",
                        f"give {flag} a new folder name, or remove the folder yourself.")


def output_inside_output(flag: str, path: object, other_flag: str, other: object) -> JourneyError:
    return JourneyError(f"{flag} {path}: is inside the {other_flag} folder {other}; writing the scores would delete it.",
                        f"write {flag} outside {other}.")


def single_file_not_local(flag: str, path: object) -> JourneyError:
    return JourneyError(f"{flag} {path}: one output file is written by the driver to its own file system, not to a URI.",
                        "drop --single-file to have the executors write a folder of Parquet part files there, or give a local path.")


def folder_output_not_parquet(flag: str, path: object) -> JourneyError:
    return JourneyError(f"{flag} {path}: a folder of part files is Parquet, but the name says CSV.",
                        f"name {flag} .parquet (or without a suffix) for a folder, or ask for one CSV file (--single-file).")


def folder_output_needs_spark(flag: str, path: object) -> JourneyError:
    return JourneyError(f"{flag} {path}: a folder of Parquet part files is written by the Spark engine only.",
                        "use --engine spark, or write one file.")
