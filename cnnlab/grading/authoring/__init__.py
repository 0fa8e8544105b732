"""Authoring: the instructor's assignment source (nbgrader's format, read and validated) and the student
version generated from it (``cnnlab assign``)."""
