"""Stage 3, records: what a run writes (records.jsonl, run.json), how methods are labelled in
it, run folders, and the provenance each row carries.
"""
