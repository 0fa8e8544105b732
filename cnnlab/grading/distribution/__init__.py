"""Distribution: grading a large class on the workers of a Dask cluster, each in its own sandbox."""
