"""Stage 4, scores: the metric registry and functions, the scorer, per-run summaries, rankings
and the augmentation study's statistics.
"""
