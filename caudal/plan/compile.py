"""Compiling IR expressions to vectorized evaluators (``plan.functions.evaluation``), with
every scalar function registered first: an expression unpickled where nothing planned it (a
Ray worker) finds its kernels by importing this module."""

from caudal.plan import functions  # noqa: F401  (registers the functions)
from caudal.plan.functions.evaluation import (
    Evaluator,
    compile_expr,
    compile_projection,
    evaluate,
)

__all__ = ["Evaluator", "compile_expr", "compile_projection", "evaluate"]
