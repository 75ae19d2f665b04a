"""Compiling IR expressions to vectorized evaluators (``plan.functions.evaluation``). A
function's family (its kernels) is imported on its first lookup (``registry.find``), so an
expression unpickled where nothing planned it (a Ray worker, a compiled plan's run) loads the
families it calls and no other."""

from caudal.plan.functions.evaluation import (
    Evaluator,
    compile_expr,
    compile_projection,
    evaluate,
)

__all__ = ["Evaluator", "compile_expr", "compile_projection", "evaluate"]
