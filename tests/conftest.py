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


# The longest files, longest first: pytest-xdist (--dist loadfile --no-loadscope-reorder, as make test
# runs it) hands out whole files in collection order, and one of these started when the other workers
# are nearly done is what makes `make test` long. (Without --no-loadscope-reorder, xdist puts the files
# with the most tests first, and test_assignments.py, 5 tests and 10 minutes, ran last.)
LONGEST_FIRST = ("tests/test_assignments.py", "tests/grading/test_grade.py", "notebooks/06_transfer_learning.ipynb",
                 "tests/test_binder.py", "notebooks/04_inception_vs_resnet.ipynb", "tests/grading/test_artefacts.py",
                 "tests/test_without_compiler.py", "notebooks/05_filter_visualisation.ipynb")  # fmt: skip


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every file keeps its own order, and the rest keep theirs
