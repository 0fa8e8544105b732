"""Assignments and grading: nbgrader-format sources, generated student versions, an autograder.

Kernel side (imported by assignment notebooks; light, no TensorFlow):
    from cnnlab.grading import record, record_artefact, grading_rng
    from cnnlab.grading.checks import check_array, check_shape, check_close

Instructor side: ``cnnlab assign`` (:mod:`cnnlab.grading.authoring.assign`) and
``cnnlab grade`` (:mod:`cnnlab.grading.grade`).
"""

from cnnlab.grading.authoring.source import SourceError, validate
from cnnlab.grading.record import grading_rng, record, record_artefact

__all__ = ["SourceError", "grading_rng", "record", "record_artefact", "validate"]
