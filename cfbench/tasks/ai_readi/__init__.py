"""AI-READI support: load a real release folder (v1, v2 or v3), or a synthetic one in the same layout.

``layout`` finds files, ``features`` parses and reduces them, ``loader`` builds the cached
feature table and the ``ai-readi`` dataset, ``synth`` writes synthetic releases, ``report`` counts
everything masked or dropped, ``commands`` adds ``cfbench data ...``.
"""
