"""cfbench plugin: dice generators (work in progress)."""
