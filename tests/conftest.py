"""Shared test set-up: quiet TensorFlow, offline data, a deterministic hypothesis profile."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "cnnlab", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("cnnlab")

# The grading fixtures are notebooks built to misbehave (infinite loops, 30 GB allocations):
# nbval must never collect them; the grading tests run them under the grader's limits.
collect_ignore_glob = ["fixtures/*"]


def pytest_collection_modifyitems(config, items):
    """Long files first: xdist hands out files (``--dist loadfile``) in collection order.

    The lessons run by nbval (one to six minutes each), then every file with a ``slow`` test,
    start before the quick files, which then fill the workers' gaps at the end instead of one
    worker finishing a six-minute file alone. The sort is stable: each file's items, a
    notebook's cells included, keep their order.
    """
    lessons = config.rootpath / "notebooks"
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: 0 if item.path.parent == lessons else 1 if item.path in slow_files else 2)
