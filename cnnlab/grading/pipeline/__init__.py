"""The grading pipeline, one module per step, in the order a submission flows:

intake (find and read) -> restore (the source's tests back around the student's answers) -> execute (a fresh
kernel in the sandbox, under limits the Linux kernel enforces) -> artefacts (what thresholds are judged on,
measured by the grader) -> score (verdicts in the grader's process). :mod:`.submission` takes one submission
through all of it; :mod:`.kernels` is the pool of sandboxed kernels it runs in.
"""
