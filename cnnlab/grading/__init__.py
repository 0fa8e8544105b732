"""Assignments and grading: nbgrader-format sources, generated student versions, an autograder.

Kernel side (imported by assignment notebooks; light, no TensorFlow):
    from cnnlab.grading import record, record_artefact, grading_rng
    from cnnlab.grading.checks import check_array, check_shape, check_close

Instructor side: ``cnnlab assign`` (:mod:`cnnlab.grading.authoring.assign`) and
``cnnlab grade`` (:mod:`cnnlab.grading.grade`).
"""

from cnnlab.grading.authoring.source import SourceError
from cnnlab.grading.record import grading_rng, record, record_artefact

# No `validate` here: it would be shadowed by the submodule cnnlab.grading.validate (`cnnlab validate`)
# as soon as that is imported. Sources are checked by cnnlab.grading.authoring.source.validate.
__all__ = ["SourceError", "grading_rng", "record", "record_artefact"]
