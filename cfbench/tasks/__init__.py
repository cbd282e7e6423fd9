"""Stage 1, tasks: datasets and their loaders, task specs (``tasks/*.toml``) and the classifier a
task trains; AI-READI's loader and synthetic release live in ``tasks.ai_readi``.
"""
