"""cfbench plugin: nice generators (work in progress)."""
