"""Structs and arrays: ``s.field``, named_struct(), ``a[i]`` (1-based; NULL out of range, as
in PostgreSQL), ARRAY[...], cardinality() and array_length()."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from caudal import compute as pc
from caudal.plan.expressions import Call, Expr
from caudal.plan.functions.coerce import arity, cast, coerce_all, constant_value, expect
from caudal.plan.functions.kernels import broadcast, finish, list_offsets, null_of, to_array
from caudal.plan.functions.registry import BindError, register
from caudal.types import sql_name

# ---- struct fields ----------------------------------------------------------------------


def bind_struct_field(name: str, args: list[Expr]) -> Call:
    """``struct_field(s, 'name')``: the field of a struct, found case-insensitively unless
    two fields differ only in case."""
    arity("struct_field", args, 2)
    struct = args[0]
    wanted = constant_value(args[1], "struct_field", "field name")
    t = struct.dtype
    if not pa.types.is_struct(t):
        raise BindError(f"cannot read field {wanted!r} of a {sql_name(t)} value",
                        hint="fields exist on STRUCT values only")
    names = [t.field(i).name for i in range(t.num_fields)]
    index = names.index(wanted) if wanted in names else None
    if index is None:
        folded = [i for i, n in enumerate(names) if n.lower() == str(wanted).lower()]
        if len(folded) != 1:
            raise BindError(f"struct has no field {wanted!r}",
                            hint=f"fields: {', '.join(names)}")
        index = folded[0]
    return Call(t.field(index).type, "struct_field", (struct,), {"index": index})


def _struct_field(args, call):
    value = args[0]
    index = call.options["index"]
    if isinstance(value, pa.Scalar):
        if not value.is_valid:
            return null_of(call.dtype)
        return value[index]
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    # StructArray.field ignores the parent's nulls; a NULL struct has NULL fields
    return pc.struct_field(value, [index])


register("struct_field", bind_struct_field, _struct_field, "s.field -> the field's value",
         internal=True)


def _bind_named_struct(name: str, args: list[Expr]) -> Call:
    """``named_struct('a', x, 'b', y)``: a STRUCT<a, b> of the values (DataFusion's and
    Spark's spelling), NULL fields where a value is NULL."""
    if not args or len(args) % 2:
        raise BindError("named_struct() takes pairs of a field name and a value",
                        hint="named_struct('start', s, 'end', e)")
    names = tuple(str(constant_value(a, "named_struct", "field name")) for a in args[::2])
    if len({n.lower() for n in names}) != len(names):
        raise BindError("named_struct() field names must differ")
    values = tuple(args[1::2])
    dtype = pa.struct([pa.field(n, v.dtype) for n, v in zip(names, values)])
    return Call(dtype, "named_struct", values, {"names": names})


def _named_struct(args, call):
    arrays, scalar = broadcast(args)
    out = pa.StructArray.from_arrays([a.cast(t.type) for a, t in zip(arrays, call.dtype)],
                                     fields=list(call.dtype))
    return finish(out, scalar)


register("named_struct", _bind_named_struct, _named_struct,
         "named_struct('name', value, …) -> STRUCT with those fields")


def _bind_row(name: str, args: list[Expr]) -> Call:
    """``ROW(a, b, …)`` (Flink, PostgreSQL, DuckDB): a ROW of the values, its fields named
    f1, f2, … as PostgreSQL names a record's (a NULL without a type is TEXT)."""
    if not args:
        raise BindError("ROW() needs at least one value", hint="ROW(a, b)")
    values = tuple(cast(a, pa.string()) if pa.types.is_null(a.dtype) else a for a in args)
    names = tuple(f"f{i + 1}" for i in range(len(values)))
    dtype = pa.struct([pa.field(n, v.dtype) for n, v in zip(names, values)])
    return Call(dtype, "row", values, {"names": names})


register("row", _bind_row, _named_struct,
         "ROW(a, b, …) -> ROW with fields f1, f2, … (PostgreSQL's names)")



def ordinality_type(array: pa.DataType, spread: bool) -> pa.DataType:
    """The array of ``with_ordinality``: each element as a ROW of the element (its fields
    when ``spread``) and its position."""
    element = array.value_type
    fields = list(element) if spread else [pa.field("element", element)]
    return pa.list_(pa.struct(fields + [pa.field("ordinality", pa.int64())]))


def _with_ordinality(args, call):
    """UNNEST … WITH ORDINALITY: beside each element its position in its array, from 1
    (offsets arithmetic over the whole batch, no per-row loop)."""
    (lists,), scalar = broadcast(args)
    offsets, start, end = list_offsets(lists)
    values = lists.values.slice(start, end - start)
    starts = np.repeat(offsets[:-1], np.diff(offsets))
    position = pa.array(np.arange(end - start, dtype=np.int64) - starts + 1)
    element = call.dtype.value_type
    children = values.flatten() if call.options["spread"] else [values]
    rows = pa.StructArray.from_arrays(children + [position], fields=list(element))
    out = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), rows, type=call.dtype,
                                   mask=lists.is_null())
    return finish(out, scalar)


def _bind_with_ordinality(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    expect(args[0], pa.types.is_list, name, "an array")
    return Call(ordinality_type(args[0].dtype, False), name, (args[0],), {"spread": False})


register("with_ordinality", _bind_with_ordinality, _with_ordinality,
         "with_ordinality(a) -> each element of a beside its position (UNNEST … WITH "
         "ORDINALITY)", internal=True)



def _bind_copies(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    expect(args[0], pa.types.is_integer, name, "an integer")
    return Call(pa.list_(pa.int8()), name, (cast(args[0], pa.int64()),))


def _copies(args, call):
    """An array of n elements (zeros) per row, none for n <= 0 or NULL: unnested, a row
    repeated n times (INTERSECT ALL / EXCEPT ALL)."""
    (counts,), scalar = broadcast(args)
    n = np.maximum(pc.fill_null(counts, 0).to_numpy(zero_copy_only=False), 0)
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int32)
    zeros = pa.array(np.zeros(int(offsets[-1]), dtype=np.int8))
    return finish(pa.ListArray.from_arrays(pa.array(offsets), zeros), scalar)


register("copies", _bind_copies, _copies, "copies(n) -> an array of n elements (internal)",
         internal=True)

# ---- array elements ---------------------------------------------------------------------


def _bind_list_element(name: str, args: list[Expr]) -> Call:
    arity("list_element", args, 2)
    lst, index = args
    expect(lst, pa.types.is_list, "array subscript", "an array")
    expect(index, pa.types.is_integer, "array subscript", "an integer index")
    if pa.types.is_null(lst.dtype):
        return Call(pa.null(), "list_element", (lst, cast(index, pa.int64())))
    return Call(lst.dtype.value_type, "list_element", (lst, cast(index, pa.int64())))


def list_get(lists: pa.Array, index, one_based: bool = True) -> pa.Array:
    """Element ``index`` of every list (an array or a scalar index; negative counts from the
    end when not ``one_based``); NULL where out of range."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    n = len(lists)
    offsets = lists.offsets.to_numpy(zero_copy_only=False)
    starts, ends = offsets[:-1].astype(np.int64), offsets[1:].astype(np.int64)
    sizes = ends - starts
    if isinstance(index, pa.Scalar):
        if not index.is_valid:
            return pa.nulls(n, lists.type.value_type)
        idx = np.full(n, index.as_py(), dtype=np.int64)
        idx_valid = np.ones(n, dtype=bool)
    else:
        idx_valid = np.asarray(pc.is_valid(index).to_numpy(zero_copy_only=False), dtype=bool)
        idx = np.asarray(pc.fill_null(index, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    if one_based:
        idx = idx - 1
    else:
        idx = np.where(idx < 0, sizes + idx, idx)
    ok = idx_valid & (idx >= 0) & (idx < sizes)
    if lists.null_count:
        ok &= np.asarray(lists.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    positions = pa.array(np.where(ok, starts + idx, 0), mask=~ok)
    return pc.take(lists.values, positions)


def _list_element(args, call):
    lists, index = args
    if pa.types.is_null(call.dtype):
        return null_of(pa.null())
    if isinstance(lists, pa.Scalar):
        arrays, scalar = broadcast([lists, index])
        return finish(list_get(arrays[0], arrays[1]), scalar)
    return list_get(lists, index)


register("list_element", _bind_list_element, _list_element,
         "a[i] -> element i (1-based), NULL out of range", internal=True)

# ---- ARRAY[...], cardinality, array_length ------------------------------------------------


def interleave(columns: list[pa.Array], validity: pa.Array | None = None) -> pa.ListArray:
    """One list per row made of the row's values in ``columns`` (all of one length)."""
    n, k = len(columns[0]), len(columns)
    values = pa.concat_arrays(columns)
    order = (np.arange(n)[:, None] + np.arange(k)[None, :] * n).ravel()
    flat = pc.take(values, pa.array(order))
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    mask = None if validity is None else pc.invert(validity)
    return pa.ListArray.from_arrays(offsets, flat, mask=mask)


def _bind_make_array(name: str, args: list[Expr]) -> Call:
    if not args:
        raise BindError("ARRAY[] needs at least one element (or a CAST to a typed array)")
    coerced, dtype = coerce_all(args, "ARRAY[...]")
    if pa.types.is_null(dtype):
        dtype = pa.string()
        coerced = [cast(a, dtype) for a in coerced]
    return Call(pa.list_(dtype), "make_array", tuple(coerced))


def _make_array(args, call):
    arrays, scalar = broadcast(args)
    arrays = [a.cast(call.dtype.value_type) for a in arrays]
    return finish(interleave(arrays), scalar)


register("make_array", _bind_make_array, _make_array,
         "make_array(a, b, ...) (Arroyo's and DataFusion's spelling) or ARRAY[a, b, ...] -> array")


def _bind_cardinality(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    expect(args[0], pa.types.is_list, name, "an array")
    return Call(pa.int32(), "cardinality", tuple(args))


def _cardinality(args, call):
    arrays, scalar = broadcast(args)
    return finish(pc.cast(pc.list_value_length(arrays[0]), pa.int32()), scalar)


register("cardinality", _bind_cardinality, _cardinality,
         "cardinality(array) -> integer (number of elements)")


def _bind_array_length(name: str, args: list[Expr]) -> Call:
    arity("array_length", args, 1, 2)
    expect(args[0], pa.types.is_list, "array_length", "an array")
    dim = constant_value(args[1], "array_length", "dimension") if len(args) == 2 else 1
    return Call(pa.int32(), "array_length", (args[0],), {"dimension": dim})


def _array_length(args, call):
    arrays, scalar = broadcast(args)
    lengths = pc.cast(pc.list_value_length(arrays[0]), pa.int32())
    if call.options.get("dimension") != 1:
        return finish(pa.nulls(len(lengths), pa.int32()), scalar)
    # PostgreSQL: an empty array has no dimension 1, so its length is NULL
    lengths = pc.if_else(pc.equal(lengths, 0), null_of(pa.int32()), lengths)
    return finish(lengths, scalar)


register("array_length", _bind_array_length, _array_length,
         "array_length(array, 1) -> integer, NULL for an empty array")

__all__ = ["interleave", "list_get", "to_array"]

# ---- maps -----------------------------------------------------------------------------


def _bind_map_entries(name: str, args: list[Expr]) -> Call:
    arity(name, args, 1)
    expect(args[0], pa.types.is_map, name, "a MAP")
    t = args[0].dtype
    entry = pa.struct([pa.field("key", t.key_type), pa.field("value", t.item_type)])
    return Call(pa.list_(entry), name, tuple(args))


def _map_entries(args, call):
    """The map's own key and value arrays under its offsets (no copy of the entries)."""
    (maps,), scalar = broadcast(args)
    offsets, start, end = list_offsets(maps)
    entries = pa.StructArray.from_arrays(
        [maps.keys.slice(start, end - start), maps.items.slice(start, end - start)],
        fields=list(call.dtype.value_type))
    out = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), entries, type=call.dtype,
                                   mask=maps.is_null())
    return finish(out, scalar)


register("map_entries", _bind_map_entries, _map_entries,
         "map_entries(map) -> array of ROW(key, value), one per entry (DuckDB); "
         "UNNEST(map) AS u(k, v) reads them")
