"""benchmarks/bench_conv.py's bookkeeping: rounds alternate, and each ratio comes with its spread."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_conv  # noqa: E402


def test_ours_and_the_reference_alternate_round_by_round():
    calls = []
    mine, reference = bench_conv.interleaved_ratios(lambda: calls.append("ours"), lambda: calls.append("tf"),
                                                    rounds=5, per_round=3)  # fmt: skip
    assert len(mine) == len(reference) == 5
    assert calls[:4] == ["ours", "tf", "ours", "tf"]  # warm-up
    assert calls[4:] == (["ours"] * 3 + ["tf"] * 3) * 5


def test_the_row_gives_the_median_ratio_and_its_min_and_max(capsys):
    mine = [1.0, 2.0, 1.0, 1.0, 4.0]  # seconds: ours
    reference = [1.0, 1.0, 0.5, 2.0, 1.0]  # seconds: the reference; ratios 1, 0.5, 0.5, 2, 0.25
    ratio = bench_conv.print_spread_row("layer", "forward", mine, reference, work=2e9, target=1.0)
    assert ratio == 0.5
    line = capsys.readouterr().out
    assert "0.50x  0.25-2.00  >= 1.0x MISSED" in line
