"""Scalar functions: type rules (bind) and vectorized kernels, one module per family.

Importing this package registers nothing: ``registry.find`` imports a function's family on
its first lookup (a compiled plan's run loads only the families it calls), and
``registry.load_all`` imports every family (listings, docs, name clashes).
"""
