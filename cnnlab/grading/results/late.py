"""Deadlines and late penalties: when a submission arrived, and what that costs.

The submission time is nbgrader's: the ``timestamp.txt`` that ``nbgrader
submit`` writes beside the notebook and ``nbgrader collect`` keeps
(``submitted/<student>/<assignment>/timestamp.txt``). A submission without one
has no known time and is not penalised (its feedback says so).

``timestamp.txt`` is written by the student's own ``nbgrader submit``, so a
student can write any time into it. :func:`arrival` therefore also reads when
the notebook file in the collected folder was last written, and when the two
disagree by more than the grace period it takes the file's time and says so
on the row. A student who also forges the file's time is caught only by a
record kept on the instructor's side (the exchange's own log).

The policy: a due date, a penalty in percent of the points earned for every
started day (or hour) after it, a cap on the total penalty, and a grace period
within which a submission still counts as on time. nbgrader's own
late-submission plugins know only "no penalty" and "zero".
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["LatePolicy", "arrival", "parse_duration", "parse_time", "readable", "submission_time"]

UNITS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
TIMESTAMP_FILE = "timestamp.txt"


def parse_time(text: str, what: str = "time") -> datetime:
    """An aware datetime from ISO 8601 text (``2026-12-01 23:59``, ``...+01:00``, nbgrader's ``... UTC``).

    Text without a time zone is taken as UTC. Raises ``ValueError`` naming ``what``.
    """
    cleaned = str(text).strip()
    if cleaned.upper().endswith(" UTC"):
        cleaned = cleaned[:-4].strip() + "+00:00"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a date and time like 2026-12-01T23:59 or 2026-12-01 23:59+01:00") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{what}: {text!r} is out of range") from None
    return moment


def readable(moment: datetime | str) -> str:
    """One form for every time a person reads: ``2026-12-01 22:59 UTC`` (ISO text or an aware datetime)."""
    if isinstance(moment, str):
        try:
            moment = parse_time(moment)
        except ValueError:
            return moment
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """``90m``, ``2h``, ``1d`` or ``0``: a non-negative duration. Raises ``ValueError`` naming ``what``."""
    cleaned = str(text).strip().lower()
    scale = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
    try:
        if cleaned in ("0", ""):
            return timedelta(0)
        amount = float(cleaned[:-1])
        if cleaned[-1] not in scale or not math.isfinite(amount) or amount < 0:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"{what}: {text!r} is not a duration like 30m, 2h or 1d") from None
    return amount * scale[cleaned[-1]]


@dataclass(frozen=True)
class LatePolicy:
    """``percent`` of the earned points per started ``unit`` late, at most ``cap`` percent in all."""

    due: datetime
    percent: float = 10.0
    unit: str = "day"
    cap: float = 100.0
    grace: timedelta = timedelta(0)

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"late unit: must be one of {', '.join(UNITS)}; got {self.unit!r}")
        for name in ("percent", "cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
                raise ValueError(f"late {name}: must be a percentage from 0 to 100; got {value!r}")
        if self.due.tzinfo is None:
            raise ValueError("due: must carry a time zone (parse_time gives one)")
        if self.grace < timedelta(0):
            raise ValueError("grace: must not be negative")

    def penalty(self, submitted: datetime | None) -> tuple[float, float]:
        """``(hours late, penalty in percent)``: ``(0, 0)`` on time, within the grace period, or unknown."""
        if submitted is None:
            return 0.0, 0.0
        late = submitted - self.due
        if late <= self.grace:
            return max(0.0, late.total_seconds() / 3600), 0.0
        units = math.ceil(late / UNITS[self.unit])
        return late.total_seconds() / 3600, min(self.cap, units * self.percent)

    def to_json(self) -> dict:
        return {"due": self.due.isoformat(), "percent": self.percent, "unit": self.unit, "cap": self.cap,
                "grace_hours": self.grace.total_seconds() / 3600}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> LatePolicy:
        return cls(parse_time(data["due"], "due"), float(data["percent"]), str(data["unit"]), float(data["cap"]),
                   timedelta(hours=float(data.get("grace_hours", 0))))  # fmt: skip

    def describe(self) -> str:
        grace = f", {self.grace.total_seconds() / 3600:g} h grace" if self.grace else ""
        return f"due {readable(self.due)}; {self.percent:g}% per {self.unit} late, at most {self.cap:g}%{grace}"


def submission_time(notebook: Path) -> datetime | None:
    """The time in ``timestamp.txt`` beside ``notebook`` (nbgrader's layout), or None.

    The file is opened without following links and read only if it is a small
    regular file; anything unreadable or unparsable counts as no time at all.
    """
    path = Path(notebook).parent / TIMESTAMP_FILE
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 200:
            return None
        return parse_time(os.read(handle, 200).decode("utf-8", "replace"), TIMESTAMP_FILE)
    except (OSError, ValueError):
        return None
    finally:
        os.close(handle)


def arrival(notebook: Path, policy: LatePolicy | None) -> tuple[datetime | None, str]:
    """``(the time the submission is taken to have arrived, a note)`` for ``notebook``.

    The time is ``timestamp.txt``'s, unless the notebook file itself was last written more than
    the grace period (under ``policy``; none without one) later: then it is the file's, and the
    note says why. ``(None, "")`` when there is no ``timestamp.txt``.
    """
    claimed = submission_time(notebook)
    if claimed is None:
        return None, ""
    try:
        written = datetime.fromtimestamp(os.lstat(notebook).st_mtime, UTC)
    except (OSError, ValueError, OverflowError):
        return claimed, ""
    grace = policy.grace if policy else timedelta(0)
    if written - claimed > max(grace, timedelta(minutes=1)):
        return written, (f"{TIMESTAMP_FILE} says {readable(claimed)}, but the notebook was last written at "
                         f"{readable(written)}, which is used")  # fmt: skip
    return claimed, ""
