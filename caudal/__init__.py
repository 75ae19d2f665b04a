"""caudal: stateful stream processing for Python users.

Streaming SQL compiles to a dataflow of operators that exchange Apache Arrow record batches.
"""

__version__ = "0.1.0"
