"""Stage 5, reports: leaderboards (data, Markdown, terminal), their schema and CI check, the HTML
page and its SVG charts, and the augmentation tables.
"""
