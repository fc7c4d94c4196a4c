"""The local batch engine (``journey score``, ``engine="local"``; see :mod:`journey_stage.serving.batch`
for the whole procedure): read units are validated into a *spill* of canonical events by customer
partition, the partitions are scored one by one, and the output is written atomically.

The spill is kept in memory while small, else written as LZ4 Arrow IPC files to a hidden folder
next to the output (``.<out>.spill-<pid>-<host>.<random>``: the next run removes it if this
process is killed). Big inputs use ``workers`` spawned processes: Parquet read units are validated
and partitions are scored in parallel; the main process reads CSV / JSON Lines and writes the
output in partition order. Workers die with the main process, even when it is killed (SIGKILL).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from journey_stage.core import io
from journey_stage.core.errors import JourneyError
from journey_stage.serving.partition import EVENT_SCHEMA, partition_of, score_partition
from journey_stage.serving.progress import Progress, Tasks, open_bar
from journey_stage.serving.reading import Unit, UnitResult, plan_units, read_totals, validate_unit
from journey_stage.serving.writing import OutputWriter, empty_rejects, write_atomically

SPILL_MEMORY_BYTES = 256 * 2**20  # canonical events kept in memory before spilling to disk
PARALLEL_MIN_ROWS = 2_000_000  # below this, one process (starting workers costs a few seconds)


# ---- the spill: canonical events by customer partition -------------------------------------------

def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def split_by_partition(events: pd.DataFrame, parts: int) -> list[pa.Table]:
    """A chunk's canonical events -> one Arrow table per customer partition (row order kept)."""
    part = partition_of(events["customer_id"], parts)
    table = pa.Table.from_pandas(events, schema=EVENT_SCHEMA, preserve_index=False)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    return [table.take(pa.array(order[bounds[p]:bounds[p + 1]])) for p in range(parts)]


class SeqWriter:
    """One read unit's events on disk: per chunk, one record batch per partition (batch j*P + p)."""

    def __init__(self, path: Path, parts: int):
        self.path, self.parts = path, parts
        self._w = None

    def write(self, events: pd.DataFrame) -> None:
        self.write_pieces(split_by_partition(events, self.parts))

    def write_pieces(self, pieces: list[pa.Table]) -> None:
        if self._w is None:
            self._w = pa.ipc.new_file(self.path, EVENT_SCHEMA, options=pa.ipc.IpcWriteOptions(compression="lz4"))
        for piece in pieces:
            self._w.write_batch(_one_batch(piece))

    def close(self) -> bool:
        if self._w is None:
            return False
        self._w.close()
        return True


class Spill:
    """Valid canonical events by customer partition, in input order (read unit, then rows).

    Kept in memory while small; beyond ``memory_bytes`` (and always for units validated by worker
    processes) each read unit is an Arrow IPC file ``seq-NNNNNN.arrow`` in a hidden folder next to
    the output. The folder is removed by the caller."""

    def __init__(self, parts: int, folder: Path, memory_bytes: int = SPILL_MEMORY_BYTES):
        self.parts = parts
        self.folder = folder
        self._memory_bytes = memory_bytes
        self._mem: dict[int, list[list[pa.Table]]] = {}
        self._mem_size = 0
        self._files: dict[int, Path] = {}
        self._open: dict[int, SeqWriter] = {}

    def path_of(self, seq: int) -> Path:
        return self.folder / f"seq-{seq:06d}.arrow"

    def files(self) -> dict[int, Path]:
        """The units on disk so far: seq -> spill file."""
        return dict(self._files)

    def add_file(self, seq: int) -> None:
        """Register a unit written by a worker process to ``path_of(seq)``."""
        self._files[seq] = self.path_of(seq)

    def add(self, seq: int, events: pd.DataFrame) -> None:
        pieces = split_by_partition(events, self.parts)
        if seq in self._open:
            self._open[seq].write_pieces(pieces)
            return
        self._mem.setdefault(seq, []).append(pieces)
        self._mem_size += sum(x.nbytes for x in pieces)
        if self._mem_size > self._memory_bytes:  # move everything to disk; this unit's file stays open
            for sq, chunks in self._mem.items():
                w = SeqWriter(self.path_of(sq), self.parts)
                for ch in chunks:
                    w.write_pieces(ch)
                if sq == seq:
                    self._open[sq] = w
                else:
                    w.close()
                    self._files[sq] = w.path
            self._mem, self._mem_size = {}, 0

    def end_unit(self, seq: int) -> None:
        w = self._open.pop(seq, None)
        if w is not None and w.close():
            self._files[seq] = w.path

    def close(self) -> None:
        for seq in list(self._open):
            self.end_unit(seq)

    def read(self, p: int) -> pa.Table:
        """Partition ``p``: every unit's pieces in input order (not yet deduplicated across units)."""
        mem = {sq: [ch[p] for ch in chunks] for sq, chunks in self._mem.items()}
        for chunks in self._mem.values():  # release as we go
            for ch in chunks:
                ch[p] = None
        return read_partition(p, self.parts, self._files, mem)


def read_partition(p: int, parts: int, files: dict[int, Path], mem: dict[int, list] | None = None) -> pa.Table:
    pieces = []
    mem = mem or {}
    for seq in sorted(set(files) | set(mem)):
        if seq in files:
            with pa.memory_map(str(files[seq])) as src:
                reader = pa.ipc.open_file(src)
                for i in range(p, reader.num_record_batches, parts):
                    b = reader.get_batch(i)
                    if b.num_rows:
                        pieces.append(pa.Table.from_batches([b]))
        pieces.extend(t for t in mem.get(seq, []) if t is not None and t.num_rows)
    if not pieces:
        return EVENT_SCHEMA.empty_table()
    return pa.concat_tables(pieces).combine_chunks()


# ---- worker processes ----------------------------------------------------------------------------

_WORKER: dict = {}


def _worker_init(predictor, playbook, parts: int, batch_rows: int, parent: int | None = None) -> None:
    """``predictor``: or the path of its pickle (small start-up data: an interrupt cannot cut it in half)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what an interrupt means
    if parent is not None:
        _die_with_parent(parent)
    predictor = pickle.loads(Path(predictor).read_bytes()) if isinstance(predictor, str) else predictor
    _WORKER.update(predictor=predictor, playbook=playbook, parts=parts, batch_rows=batch_rows)


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive the main process, even killed with SIGKILL: on Linux the kernel kills
    it with its parent (PR_SET_PDEATHSIG = 1); everywhere a thread ends it once the parent is gone."""
    with suppress(OSError, AttributeError):
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="journey-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker_validate(unit: Unit, path: Path, allow_rejects: bool):
    """A Parquet read unit, validated on a worker into its own spill file. User errors come back
    as values (exceptions with extra fields do not survive pickling)."""
    w = SeqWriter(path, _WORKER["parts"])
    try:
        res = validate_unit(unit, _WORKER["predictor"].taxonomy, _WORKER["batch_rows"], allow_rejects, w.write)
    except JourneyError as exc:
        return ("error", exc.message, exc.hint)
    finally:
        spilled = w.close()
    res.spilled = spilled
    return res


def _worker_score(p: int, files: dict[int, Path], as_of, reasons: bool):
    table = read_partition(p, _WORKER["parts"], files)
    frame, stats = score_partition(table, _WORKER["predictor"], as_of, _WORKER["playbook"], reasons)
    return p, frame, stats


@contextmanager
def _signals_deferred():
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is done (main thread only), then act."""
    got, previous = [], {}
    if threading.current_thread() is threading.main_thread():  # the only thread that gets signals
        for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if s is not None:
                previous[s] = signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if got:
            signal.raise_signal(got[0])


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class WorkerPool:
    """``workers`` spawned processes holding the predictor (concurrent.futures: a worker that dies
    raises BrokenProcessPool instead of hanging).

    All workers are started at once with ``__main__`` hidden, so they do not re-run the caller's
    script (a script calling score_file without ``if __name__ == "__main__":`` would otherwise run
    again in every worker). ``close`` terminates them (after Ctrl-C too)."""

    def __init__(self, workers: int, initargs: tuple):
        import multiprocessing as mp
        import types
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self.ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=initargs)
            with _signals_deferred():  # a worker interrupted while it receives its start-up data prints a traceback
                started = [self.ex.submit(int) for _ in range(workers)]
            for f in started:
                f.result()
        except BaseException:
            sys.modules["__main__"] = main
            self.close()
            raise
        finally:
            sys.modules["__main__"] = main

    def submit(self, fn, *args):
        return self.ex.submit(fn, *args)

    def close(self) -> None:
        ex = getattr(self, "ex", None)
        if ex is None:
            return
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for proc in procs:  # our own workers, by handle
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self.ex = None


# ---- the engine ----------------------------------------------------------------------------------

def score_local(files: list[Path], events_path: Path, out_path: Path, predictor, t_as_of, rejects: Path | None, reasons: bool,
                n_parts: int, progress: Progress | None, batch_rows: int, estimated_rows: int | None, workers: int) -> dict:
    """Score ``files`` (the input ``events_path``) into ``out_path`` with ``workers`` processes (1 =
    none) and ``n_parts`` customer partitions; returns the counts of
    :func:`journey_stage.serving.batch.score_file` (without ``seconds``). ``estimated_rows`` (exact
    row count of an all-Parquet input, else None) is not used."""
    from journey_stage.model.playbook import load_playbook

    taxonomy = predictor.taxonomy
    playbook = load_playbook()
    allow_rejects = rejects is not None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spill_dir = io.temp_folder(out_path, "spill")
    spill = Spill(n_parts, spill_dir, SPILL_MEMORY_BYTES if workers == 1 else 0)  # workers read the spill from disk
    pool = None
    try:
        units = plan_units(files, batch_rows)
        if workers > 1:
            (spill_dir / "predictor.pickle").write_bytes(pickle.dumps(predictor, protocol=pickle.HIGHEST_PROTOCOL))
            pool = WorkerPool(workers, (str(spill_dir / "predictor.pickle"), playbook, n_parts, batch_rows, os.getpid()))
        with open_bar(progress) as bar:
            tasks = Tasks(bar)
            read_task = tasks.add("reading and validating events", len(units))
            results = _phase_validate(units, spill, pool, taxonomy, batch_rows, allow_rejects, tasks, read_task)
            totals = read_totals(results, taxonomy, allow_rejects, str(events_path))
            t = t_as_of if t_as_of is not None else totals.max_ts
            scored = _phase_score(n_parts, spill, pool, predictor, t, playbook, reasons, workers)
            written = write_atomically(out_path, predictor, reasons, partial(_write_partitions, scored, tasks, n_parts),
                                       rejects, partial(_rejects_of, results))  # rejects only once the scores are complete
    finally:
        if pool is not None:
            pool.close()
        spill.close()
        shutil.rmtree(spill_dir, ignore_errors=True)
    rejected = int(sum(len(x) for r in results for x in r.rejects))
    return {
        "scored": int(written["scored"]),
        "ineligible": int(written["customers"] - written["scored"]),
        "rejected": rejected,
        "duplicates": int(totals.duplicates + written["dups"]),
        "input_rows": int(totals.input_rows),
        "events": int(written["events"]),
        "customers": int(written["customers"]),
        "problems": int(totals.n_problems),
        "partitions": int(n_parts),
        "as_of": t.isoformat() if t is not None else None,
        "engine": "local",
        "workers": int(workers),
        "out": str(out_path),
    }


def _phase_validate(units, spill: Spill, pool, taxonomy, batch_rows, allow_rejects, tasks, read_task) -> list[UnitResult]:
    """Validate every read unit into the spill; Parquet units on the workers when there are some."""
    results: dict[int, UnitResult] = {}
    pending = {}
    for unit in units:
        if pool is not None and unit.row_groups is not None:
            pending[unit.seq] = pool.submit(_worker_validate, unit, spill.path_of(unit.seq), allow_rejects)
    for unit in units:
        if unit.seq in pending:
            continue
        results[unit.seq] = validate_unit(unit, taxonomy, batch_rows, allow_rejects, lambda ev, s=unit.seq: spill.add(s, ev))
        spill.end_unit(unit.seq)
        tasks.advance(read_task)
    for seq, job in pending.items():
        res = job.result()
        if isinstance(res, tuple):
            raise JourneyError(res[1], res[2])
        if res.spilled:
            spill.add_file(seq)
        results[seq] = res
        tasks.advance(read_task)
    spill.close()
    return [results[u.seq] for u in units]


def _phase_score(n_parts, spill: Spill, pool, predictor, t, playbook, reasons, workers) -> Iterator[tuple[pd.DataFrame, dict]]:
    """Scored partitions in partition order; on the workers (a few partitions ahead) if any."""
    if pool is None:
        for p in range(n_parts):
            yield score_partition(spill.read(p), predictor, t, playbook, reasons)
        return
    files = spill.files()
    window: deque = deque()
    nxt = 0
    while nxt < n_parts or window:
        while nxt < n_parts and len(window) < workers + 1:
            window.append(pool.submit(_worker_score, nxt, files, t, reasons))
            nxt += 1
        _, frame, stats = window.popleft().result()
        yield frame, stats


def _write_partitions(scored: Iterator[tuple[pd.DataFrame, dict]], tasks: Tasks, n_parts: int, writer: OutputWriter) -> dict:
    """Append the scored partitions to the output in order; their counts summed (and rows written)."""
    totals = {"dups": 0, "events": 0, "customers": 0, "scored": 0}
    score_task = tasks.add(f"scoring {n_parts} customer partitions", n_parts)
    for frame, stats in scored:
        for k in ("dups", "events", "customers"):
            totals[k] += stats[k]
        if len(frame):
            writer.write(frame)
            totals["scored"] += len(frame)
        del frame
        tasks.advance(score_task)
    return totals


def _rejects_of(results: list[UnitResult]) -> pd.DataFrame:
    """Every unit's rejected rows, in input order."""
    frames = [x for r in results for x in r.rejects]
    return pd.concat(frames, ignore_index=True) if frames else empty_rejects()
