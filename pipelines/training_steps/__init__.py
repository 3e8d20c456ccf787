"""The training pipeline's steps, one module per stage: ``data`` (ingest, validate, version, split),
``candidates`` (train, select), ``evaluation``, ``promotion`` (gate, infra validation, approval, register),
with ``run_records`` for what a run records beside its results.

Deliberately empty: a step's code digest counts the packages its module sits in, so this file stays free of
imports that would tie every step's cache to every other step's code.
"""
