"""Deadlines and late penalties, from policies and timestamps made by hand."""

from datetime import UTC, datetime, timedelta

import pytest

from cnnlab.grading.results.late import LatePolicy, parse_duration, parse_time, submission_time

DUE = parse_time("2026-12-01T23:59:00+00:00")


@pytest.mark.parametrize("text", ["2026-12-01 23:59:00.000000 UTC", "2026-12-01T23:59", "2026-12-02T00:59+01:00",
                                  "2026-12-01T23:59:00Z"])
def test_times_are_read_as_nbgrader_and_people_write_them(text):
    assert parse_time(text) == DUE


@pytest.mark.parametrize("hours, percent", [(-5, 0), (0.2, 0), (0.26, 10), (23.9, 10), (24.1, 20), (24 * 9, 50)])
def test_penalty_per_started_day_after_the_grace_period_with_a_cap(hours, percent):
    policy = LatePolicy(DUE, percent=10, unit="day", cap=50, grace=timedelta(minutes=15))
    late, penalty = policy.penalty(DUE + timedelta(hours=hours))
    assert penalty == percent and late == pytest.approx(max(hours, 0))


def test_hourly_penalty_and_unknown_time():
    policy = LatePolicy(DUE, percent=5, unit="hour")
    assert policy.penalty(DUE + timedelta(minutes=61)) == (pytest.approx(61 / 60), 10)
    assert policy.penalty(None) == (0.0, 0.0)
    assert LatePolicy.from_json(policy.to_json()) == policy


@pytest.mark.parametrize("kwargs, message", [({"unit": "week"}, "late unit"), ({"percent": 120}, "late percent"),
                                             ({"cap": -1}, "late cap"), ({"grace": timedelta(hours=-1)}, "grace")])
def test_bad_policies_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LatePolicy(DUE, **kwargs)


def test_bad_times_and_durations_name_the_argument():
    with pytest.raises(ValueError, match="--due: 'tomorrow'"):
        parse_time("tomorrow", "--due")
    with pytest.raises(ValueError, match="--grace: '15 minutes'"):
        parse_duration("15 minutes", "--grace")
    assert parse_duration("90m") == timedelta(minutes=90) and parse_duration("0") == timedelta(0)


def test_submission_time_comes_from_timestamp_txt_and_nothing_else(tmp_path):
    notebook = tmp_path / "ann" / "conv" / "conv.ipynb"
    notebook.parent.mkdir(parents=True)
    assert submission_time(notebook) is None
    (notebook.parent / "timestamp.txt").write_text("2026-12-02 10:00:00.5 UTC\n")
    assert submission_time(notebook) == datetime(2026, 12, 2, 10, 0, 0, 500000, tzinfo=UTC)
    (notebook.parent / "timestamp.txt").unlink()
    (tmp_path / "elsewhere.txt").write_text("2020-01-01 00:00 UTC")
    (notebook.parent / "timestamp.txt").symlink_to(tmp_path / "elsewhere.txt")
    assert submission_time(notebook) is None  # a link is never followed


def test_a_forged_timestamp_gives_way_to_when_the_notebook_was_written(tmp_path):
    """timestamp.txt is the student's own: a 2020 time on a notebook written in 2026 is not on time."""
    import os  # noqa: PLC0415

    from cnnlab.grading.results.late import arrival  # noqa: PLC0415

    notebook = tmp_path / "ann" / "conv" / "conv.ipynb"
    notebook.parent.mkdir(parents=True)
    notebook.write_text("{}")
    written = datetime(2026, 12, 2, 10, 0, tzinfo=UTC).timestamp()
    os.utime(notebook, (written, written))
    policy = LatePolicy(datetime(2026, 12, 1, 23, 59, tzinfo=UTC), grace=timedelta(minutes=15))
    (notebook.parent / "timestamp.txt").write_text("2020-01-01 00:00:00 UTC")
    when, note = arrival(notebook, policy)
    assert when == datetime(2026, 12, 2, 10, 0, tzinfo=UTC) and "2020-01-01 00:00 UTC" in note
    assert policy.penalty(when)[1] == 10.0
    (notebook.parent / "timestamp.txt").write_text("2026-12-02 10:05:00 UTC")  # saved, then submitted: agrees
    assert arrival(notebook, policy) == (datetime(2026, 12, 2, 10, 5, tzinfo=UTC), "")


@pytest.mark.parametrize("text", ["0001-01-01 00:00+23:00", "9999-12-31T23:59-23:00"])
def test_a_time_no_clock_can_show_is_no_time(tmp_path, text):
    """A timestamp.txt at the edge of the calendar must not stop the batch: it reads as no time at all."""
    with pytest.raises(ValueError, match="out of range"):
        parse_time(text)
    notebook = tmp_path / "conv.ipynb"
    (tmp_path / "timestamp.txt").write_text(text)
    assert submission_time(notebook) is None
