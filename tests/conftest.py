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

