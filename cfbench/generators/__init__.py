"""Generators that ship with the core (registered through the ``builtin`` entry point)."""
