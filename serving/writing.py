"""Writing batch output (both engines): the output file kinds and schema, the writer that appends
scored frames to one Parquet or CSV file, and the atomic write of scores and rejects.

Scores are written to a temporary file in the output's folder that replaces the target with
``os.replace`` only when everything succeeded: a failure, Ctrl-C or SIGTERM leaves no partial output
and no temporary file (those of a killed run are removed by the next run). :func:`check_output`
refuses before any work an output that would overwrite an input or the other output, or that
cannot be written. Columns are those of the HTTP API flattened
(:func:`journey_stage.model.scoring.output_columns`), plus ``reasons`` (JSON text) with ``reasons=True``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from journey_stage.core import errors, io
from journey_stage.core.errors import JourneyError

T = TypeVar("T")


def output_kind(path: Path) -> str:
    """The output kind from the name: ``"Parquet"`` (.parquet, .pq) or ``"CSV"`` (.csv, .csv.gz); else an error."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "CSV"
    if name.endswith((".parquet", ".pq")):
        return "Parquet"
    raise JourneyError(f"{path}: unsupported output file type.", "name the output .parquet (recommended) or .csv / .csv.gz.")


def output_schema(predictor, reasons: bool) -> pa.Schema:
    """Arrow schema of the output: ``eligible`` boolean, probabilities float64, the rest text."""
    from journey_stage.model.scoring import output_columns  # imported when needed: `journey validate` checks outputs here

    fields = []
    for c in output_columns(predictor, reasons):
        if c == "eligible":
            t = pa.bool_()
        elif c.endswith("_probability") or c.startswith("stage_probability_"):
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(c, t))
    return pa.schema(fields)


class OutputWriter:
    """Appends scored frames to one Parquet (row group per frame) or CSV file at ``tmp``."""

    def __init__(self, tmp: Path, kind: str, schema: pa.Schema, gz: bool = False):
        self.tmp, self.kind, self.schema, self.gz = tmp, kind, schema, gz
        self.rows = 0
        self._pq: pq.ParquetWriter | None = None
        self._fh = None
        self._header = True

    def write(self, frame: pd.DataFrame) -> None:
        frame = frame[self.schema.names]
        if self.kind == "Parquet":
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, self.schema)
            self._pq.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        else:
            if self._fh is None:
                self._fh = gzip.open(self.tmp, "wt", newline="") if self.gz else open(self.tmp, "w", newline="")
            frame.to_csv(self._fh, header=self._header, index=False)
            self._header = False
        self.rows += len(frame)

    def write_arrow(self, table: pa.Table) -> None:
        """Arrow input (the Spark engine): Parquet as is; CSV through pandas so the text is identical."""
        table = table.select(self.schema.names).cast(self.schema)
        if self.kind == "Parquet":
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, self.schema)
            self._pq.write_table(table)
            self.rows += table.num_rows
        else:
            for batch in table.to_batches(max_chunksize=200_000):
                self.write(batch.to_pandas())

    def close(self) -> None:
        if self._pq is None and self._fh is None:  # no rows: the schema / header only
            empty = self.schema.empty_table()
            if self.kind == "Parquet":
                pq.write_table(empty, self.tmp)
            else:
                self.write(empty.to_pandas())
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()

    def abort(self) -> None:
        for h in (self._pq, self._fh):
            try:
                if h is not None:
                    h.close()
            except Exception:  # noqa: BLE001 - the file is deleted anyway
                pass


def open_output(tmp: Path, target: Path, predictor, reasons: bool) -> OutputWriter:
    """The writer for ``target`` (kind and compression from its name), writing to ``tmp``."""
    return OutputWriter(tmp, output_kind(target), output_schema(predictor, reasons), gz=target.name.lower().endswith(".gz"))


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(path, flag: str, *, inputs=(), others=()) -> None:
    """Before any work: refuse an output that is an input (or inside an input folder), another
    output (``others``: (flag, path) pairs) or that cannot be written (its folder is created and a
    temporary file tried, so a read-only folder or a file in the way is one line, not a traceback);
    remove the temporary files of the output left by killed runs."""
    path = Path(path)
    for src in inputs:
        if src is None or "://" in str(src):
            continue
        src = Path(src)
        if _same(path, src):
            raise errors.output_is_input(flag, path, src)
        if src.is_dir() and path.resolve().is_relative_to(src.resolve()):
            raise errors.output_inside_input(flag, path, src)
    for other_flag, other in others:
        if other is not None and _same(path, Path(other)):
            raise errors.outputs_collide(flag, path, other_flag)
    if path.is_dir():
        raise errors.output_not_writable(flag, path, "it is a folder")
    check_writable_folder(flag, path)


def check_writable_folder(flag: str, path: Path) -> None:
    """The folder of ``path`` exists or can be made, and a temporary file can be written in it
    (stale temporary files of dead runs of the same output are removed on the way)."""
    folder = path.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise errors.output_not_writable(flag, path, f"{existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        io.remove_stale_temps(path)
        io.new_temp_file(path).unlink()
    except OSError as exc:
        raise errors.output_not_writable(flag, path, f"folder {folder} is not writable ({exc.strerror or exc})") from None


def empty_rejects() -> pd.DataFrame:
    """The rejects file of an input without invalid rows: its columns only."""
    return pd.DataFrame({"source": pd.Series(dtype="str"), "row": pd.Series(dtype="int64"), "reject_reason": pd.Series(dtype="str")})


def write_atomically(out_path: Path, predictor, reasons: bool, fill: Callable[[OutputWriter], T], rejects: Path | None = None,
                     rejects_frame: Callable[[], pd.DataFrame] | None = None) -> T:
    """Write the scores with ``fill(writer)`` to a temporary file that replaces ``out_path`` on
    success, then (only when the scores are complete; atomic too) ``rejects_frame()`` to ``rejects``
    if given. A failure anywhere leaves neither file half written. Returns what ``fill`` returned."""
    with io.atomic_path(out_path) as tmp:
        writer = open_output(tmp, out_path, predictor, reasons)
        try:
            result = fill(writer)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        if rejects is not None:
            io.write_table(rejects_frame(), rejects)
    return result
