"""Logical plans, the optimizer, the expression IR and the physical dataflow graph.

plan/ imports no operator and no connector code: the physical graph is plain data that the
runtime turns into operator instances through a registry.
"""
