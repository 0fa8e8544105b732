"""Correct answers written differently from the sources': each must earn every automatic point.

``SETS[name]`` is one student's submission: ``{assignment: {answer grade_id: cell source}}``.
An answer cell not listed keeps the source's own answer. ``tests/test_assignments.py``
builds one notebook per (set, assignment) from ``solutions/`` and grades it with the
class. Every answer here must do what its task's text asks, and nothing the text
forbids; each differs from the reference in a way the text allows (float32, a list,
vectorised NumPy, activations as separate layers, other hyperparameters, ...).
"""

SETS: dict[str, dict[str, dict[str, str]]] = {}
