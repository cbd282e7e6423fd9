"""cfbench plugin: llm generators (work in progress)."""
