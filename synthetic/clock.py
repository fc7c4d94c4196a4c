"""Time of the synthetic generator: the activity clock and the calendar months of the period.

:class:`Clock` maps between wall time and *activity time* (the simulator's uniform clock);
:class:`Months` numbers the calendar months of the simulated period (campaign ids are per month).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from journey_stage.synthetic.params import GeneratorParams


class Clock:
    """Monotone map between wall time and *activity time* (both in days since start).

    Activity time runs at a constant rate; wall time is stretched at night and compressed in
    the evening, on busy weekdays and in busy months, so uniform activity produces the intraday,
    weekly and seasonal profile of ``hour_weights``/``weekday_weights``/``month_weights``.
    """

    def __init__(self, p: GeneratorParams, start: pd.Timestamp, days: float) -> None:
        hours = int(math.ceil(days * 24)) + 24
        t0 = np.datetime64(start.tz_convert("UTC").tz_localize(None).floor("h"), "h")
        bins = t0 + np.arange(hours)
        hod = (bins - bins.astype("datetime64[D]")).astype(np.int64)
        day = bins.astype("datetime64[D]").astype(np.int64)
        dow = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        month = bins.astype("datetime64[M]").astype(np.int64) % 12
        w = (
            np.asarray(p.hour_weights)[hod]
            * np.asarray(p.weekday_weights)[dow]
            * np.asarray(p.month_weights)[month]
        )
        w = w / w.mean()
        # knots in wall days measured from the (unfloored) start
        offset = (start.tz_convert("UTC").tz_localize(None) - start.tz_convert("UTC").tz_localize(None).floor("h")).total_seconds() / 86400.0
        kt = np.arange(hours + 1) / 24.0 - offset
        ku = np.concatenate([[0.0], np.cumsum(w) / 24.0])
        ku = ku - np.interp(0.0, kt, ku)
        # extend far to the right with slope 1 so activity times past the end stay monotone
        self.kt = np.append(kt, kt[-1] + 1e6)
        self.ku = np.append(ku, ku[-1] + 1e6)

    def to_activity(self, t: np.ndarray | float) -> np.ndarray:
        """Activity days of wall days ``t`` (both since start)."""
        return np.interp(t, self.kt, self.ku)

    def to_wall(self, u: np.ndarray | float) -> np.ndarray:
        """Wall days of activity days ``u`` (both since start)."""
        return np.interp(u, self.ku, self.kt)



class Months:
    """Calendar months (UTC) from ``start`` to ``start + end_sec`` seconds, numbered from 0."""

    def __init__(self, start: pd.Timestamp, end_sec: int) -> None:
        s0 = np.datetime64(start.tz_convert("UTC").tz_localize(None), "s")
        self.start_s = s0  # the start as datetime64[s] (naive UTC)
        m0 = s0.astype("datetime64[M]")
        m1 = (s0 + np.timedelta64(end_sec, "s")).astype("datetime64[M]")
        self.month0 = m0
        self.n_months = int((m1 - m0).astype(np.int64)) + 1

    def index(self, t_sec: np.ndarray) -> np.ndarray:
        """Month index (0..n_months-1) of wall seconds since start."""
        ts = self.start_s + t_sec.astype("timedelta64[s]")
        return (ts.astype("datetime64[M]") - self.month0).astype(np.int64).clip(0, self.n_months - 1)
