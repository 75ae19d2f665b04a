"""Connectors: one module per external system. Connectors know nothing of the planner."""
