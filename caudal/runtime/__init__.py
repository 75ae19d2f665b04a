"""Executors of a physical dataflow graph: local (threads in one process) and ray (cluster)."""
