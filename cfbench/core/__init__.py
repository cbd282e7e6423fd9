"""The core contract every stage shares: the feature schema, the generator protocol, hook
specifications and the plugin registry, errors, and the small utilities (strict JSON, bounded
file reads, redaction, phases, the budget clock) below everything else.
"""
