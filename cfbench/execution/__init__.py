"""Stage 2, running generators: a run's config and defaults, method selection, the worker, the
local and Ray executors, the orchestrator that writes records, suites and the augmentation study.
"""
