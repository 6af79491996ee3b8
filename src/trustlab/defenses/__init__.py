"""Defenses (S7): backdoor detection and repair, one module per defense."""
