"""pyarrow.compute's functions, without the cost of importing pyarrow.compute.

``import pyarrow.compute`` builds a Python wrapper, with a signature and a docstring parsed
from the kernel's documentation, for every one of Arrow's ~300 kernels: about 0.2 G
instructions, 40 % of ``import pyarrow`` itself and more than all the planning and running
of a trivial job (bench/README.md, start-up). The kernels themselves are registered by
``pyarrow._compute`` (the Cython module, ~4 % of that). This module hands out the same
functions, built one by one on first use: ``caudal.compute.add(a, b)`` is
``pyarrow.compute.add(a, b)`` -- the same arguments (positional or keyword options, an
``options=`` object, ``memory_pool=``, expressions), the same kernel, the same result.

Use it as ``from caudal import compute as pc``. The few functions pyarrow.compute writes by
hand in Python (``cast``, ``take``, ``fill_null``) are written below with the same
arguments and errors; anything else it defines by hand is taken from pyarrow.compute itself
(imported then). pyarrow's own methods
(``Array.cast``, ``Table.filter``, ``Table.take``, ``sort_by``, ``is_null``, ...) import
pyarrow.compute the first time they run: code on the path of every job (planning, the
stateless operators, the common sources and sinks) calls the functions here instead;
``tests/test_startup_imports.py`` checks that a trivial job never imports pyarrow.compute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from pyarrow import _compute
from pyarrow._compute import CastOptions, Expression, TakeOptions, call_function

#: Python names of kernels whose Arrow name is a keyword (as pyarrow.compute spells them)
_RENAMED = {"and_": "and", "or_": "or"}


def cast(arr: Any, target_type: Any = None, safe: bool | None = None,
         options: CastOptions | None = None, memory_pool: Any = None) -> Any:
    """pyarrow.compute.cast."""
    if options is not None:
        if safe is not None or target_type is not None:
            raise ValueError("Must either pass values for 'target_type' and 'safe' or pass a "
                             "value for 'options'")
    else:
        target_type = pa.types.lib.ensure_type(target_type)
        options = CastOptions.unsafe(target_type) if safe is False else \
            CastOptions.safe(target_type)
    return call_function("cast", [arr], options, memory_pool)


def take(data: Any, indices: Any, *, boundscheck: bool = True, memory_pool: Any = None) -> Any:
    """pyarrow.compute.take."""
    return call_function("take", [data, indices], TakeOptions(boundscheck=boundscheck),
                         memory_pool)


def fill_null(values: Any, fill_value: Any) -> Any:
    """pyarrow.compute.fill_null."""
    if not isinstance(fill_value, (pa.Array, pa.ChunkedArray, pa.Scalar)):
        fill_value = pa.scalar(fill_value, type=values.type)
    elif values.type != fill_value.type:
        fill_value = pa.scalar(fill_value.as_py(), type=values.type)
    return call_function("coalesce", [values, fill_value])


def from_numpy(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """A 1-D NumPy array of numbers or booleans as an Arrow array (NULL where ``mask``),
    sharing its memory when it can. ``pa.array`` does the same but first checks for a
    NumPy masked array, which imports numpy.ma (~0.03-0.15 s of CPU) in a process that
    would not otherwise need it."""
    values = np.ascontiguousarray(values)
    validity, nulls = None, 0
    if mask is not None and mask.any():
        validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
        nulls = int(np.count_nonzero(mask))
    if values.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), len(values), [
            validity, pa.py_buffer(np.packbits(values, bitorder="little"))], nulls)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [validity, pa.py_buffer(values)], nulls)


def _options(name: str, options_class: type, options: Any, args: tuple, kwargs: dict) -> Any:
    """The kernel's options from the call's extra arguments (pyarrow.compute's rule)."""
    if args or kwargs:
        if options is not None:
            raise TypeError(f"Function {name!r} called with both an 'options' argument and "
                            "additional arguments")
        return options_class(*args, **kwargs)
    if options is None or isinstance(options, options_class):
        return options
    if isinstance(options, dict):
        return options_class(**options)
    raise TypeError(f"Function {name!r} expected a {options_class} parameter, got "
                    f"{type(options)}")


def _wrapper(name: str, func: _compute.Function) -> Callable[..., Any]:
    """What pyarrow.compute builds for ``func``, without its signature and docstring."""
    arity = func.arity
    class_name = func._doc.options_class
    options_class = getattr(_compute, class_name) if class_name else None

    def call(*args: Any, memory_pool: Any = None, options: Any = None, **kwargs: Any) -> Any:
        option_args: tuple = ()
        if arity is not Ellipsis:
            if len(args) < arity or (options_class is None and len(args) != arity):
                raise TypeError(f"{name} takes {arity} positional argument(s), but "
                                f"{len(args)} were given")
            args, option_args = args[:arity], args[arity:]
        if options_class is None:
            if options is not None or kwargs:
                raise TypeError(f"{name} takes no options")
        else:
            options = _options(name, options_class, options, option_args, kwargs)
        if args and isinstance(args[0], Expression):
            return Expression._call(func.name, list(args), options)
        return func.call(args, options, memory_pool)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"pyarrow.compute.{name} (built on first use by caudal.compute)."
    return call


def __getattr__(name: str) -> Any:
    """A kernel's function, built on first use and kept; pyarrow.compute's classes and
    hand-written helpers otherwise."""
    if name.startswith("__"):
        raise AttributeError(name)
    if hasattr(_compute, name):  # options classes, Expression, call_function, ...
        value = getattr(_compute, name)
    else:
        try:
            value = _wrapper(name, _compute.get_function(_RENAMED.get(name, name)))
        except KeyError:  # pyarrow raises ArrowKeyError (a KeyError) for no such kernel
            import pyarrow.compute

            try:
                value = getattr(pyarrow.compute, name)
            except AttributeError:
                raise AttributeError(f"module 'caudal.compute' has no attribute {name!r}") \
                    from None
    globals()[name] = value
    return value
