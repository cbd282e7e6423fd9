"""cfbench plugin: cfnow generators (work in progress)."""
