"""Scalar functions: type rules (bind) and vectorized kernels, one module per family.

Importing this package registers every function in ``registry.FUNCTIONS``.
"""

from caudal.plan.functions import (  # noqa: F401  (import registers)
    casts,
    conditional,
    constraints,
    json,
    math,
    nested,
    operators,
    python_udf,
    strings,
    time,
    udf_classes,
)
