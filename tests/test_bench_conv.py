"""benchmarks/bench_conv.py's bookkeeping: rounds alternate, and each ratio comes with its spread."""

import platform
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_conv  # noqa: E402


class FakeClock:
    """time.perf_counter for the benchmark, moved on only by the functions it times."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def function(self, name, calls, seconds):
        def run():
            calls.append(name)
            self.now += seconds

        return run


def test_ours_and_the_reference_alternate_round_by_round_in_batches_of_calls(monkeypatch):
    clock, calls = FakeClock(), []
    monkeypatch.setattr(bench_conv.time, "perf_counter", clock)
    ours, theirs = clock.function("ours", calls, 0.001), clock.function("tf", calls, 0.002)
    mine, reference = bench_conv.interleaved_ratios(ours, theirs, rounds=5, sample_seconds=0.01)
    assert mine == pytest.approx([0.001] * 5) and reference == pytest.approx([0.002] * 5)  # per call, not per batch
    assert calls[:6] == ["ours", "tf", "ours", "tf", "ours", "tf"]  # warm-up, then one timed call each
    assert calls[6:] == (["ours"] * 10 + ["tf"] * 5) * 5  # batches of about 10 ms each


def test_a_call_longer_than_a_sample_is_timed_alone(monkeypatch):
    clock, calls = FakeClock(), []
    monkeypatch.setattr(bench_conv.time, "perf_counter", clock)
    assert bench_conv.calls_filling(clock.function("slow", calls, 0.5), seconds=0.05) == 1


def test_the_row_gives_the_median_ratio_and_its_min_and_max(capsys):
    mine = [1.0, 2.0, 1.0, 1.0, 4.0]  # seconds: ours
    reference = [1.0, 1.0, 0.5, 2.0, 1.0]  # seconds: the reference; ratios 1, 0.5, 0.5, 2, 0.25
    ratio = bench_conv.print_spread_row("layer", "forward", mine, reference, work=2e9, target=1.0)
    assert ratio == 0.5
    line = capsys.readouterr().out
    assert "0.50x  0.25-2.00  >= 1.0x MISSED" in line


def test_the_row_gives_each_rate_as_a_share_of_the_machines_peak(capsys):
    bench_conv.print_spread_row("layer", "forward", [1.0] * 3, [0.5] * 3, work=2e9, target=1.0, peak=4.0)
    line = capsys.readouterr().out
    assert " 2.0         4.0   50%/100%    0.50x" in line  # ours 2 GF/s, tf 4 GF/s, of a 4 GF/s peak


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64", reason="fma_peak.cc is x86-64 code")
def test_the_fma_peak_is_measured_with_the_ops_own_flags(monkeypatch, capsys):
    from cnnlab.ops import build

    flags = []
    real = build._arch_flags
    monkeypatch.setattr(build, "_arch_flags", lambda cxx, system="Linux": flags.append(cxx) or real(cxx, system))
    peak = bench_conv.fma_peak()
    assert flags, "the op's -march flags were not asked for"
    # One 256-bit FMA per cycle at 1 GHz on one thread is 16 GF/s; two 512-bit FMAs per cycle at 6 GHz on 1024 threads is far above anything.
    assert peak is not None and 16 <= peak <= 64 * 6 * 1024, peak
    assert f"FMA peak of this machine: {peak:.1f} GF/s" in capsys.readouterr().out


def test_without_a_compiler_the_peak_is_said_to_be_unmeasured(monkeypatch, capsys):
    from cnnlab.ops import build

    def no_compiler(system=None):
        raise build.BuildError("no C++ compiler found")

    monkeypatch.setattr(build, "_find_cxx", no_compiler)
    assert bench_conv.fma_peak() is None
    assert "FMA peak: not measured (no C++ compiler found)" in capsys.readouterr().out
