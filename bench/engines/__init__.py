"""caudal beside the Python streaming engines a user would pick instead (Bytewax, Pathway,
PyFlink): same CSV input, same three queries, whole processes. ``python -m bench.engines``."""
