"""Text functions with PostgreSQL meaning: positions count characters from 1, concat() skips
NULLs while ``||`` returns NULL, trim() removes spaces only, left()/right() take negative
counts, regexp_replace() replaces the first match unless flag 'g' is given.

pyarrow kernels take constant patterns; when a pattern, count or delimiter is a column the
kernel falls back to a Polars expression (a LIKE pattern to DuckDB's LIKE). Regular expressions are RE2 (pyarrow and Polars),
close to PostgreSQL's for common patterns (no backreferences inside a pattern).
"""

from __future__ import annotations

import re

import pyarrow as pa

from caudal import compute as pc
from caudal.errors import RuntimeFailure
from caudal.plan.expressions import Call, Expr, Literal
from caudal.plan.functions.coerce import arity, cast, constant_value
from caudal.plan.functions.kernels import (
    any_true,
    broadcast,
    duckdb_eval,
    finish,
    is_scalar,
    null_of,
    polars_eval,
    propagate_nulls,
)
from caudal.plan.functions.nested import interleave, list_get
from caudal.plan.functions.registry import BindError, builtin, is_constant, register
from caudal.types import is_text, sql_name

TEXT = pa.string()


def check_args(fn: str, args: list[Expr], kinds: str, required: int | None = None,
               result: pa.DataType = TEXT, options: dict | None = None) -> Call:
    """Bind ``fn`` whose parameters are ``kinds`` (t = text, i = integer, b = boolean),
    the first ``required`` of them mandatory. Text literals adapt to integer parameters."""
    arity(fn, args, len(kinds) if required is None else required, len(kinds))
    out = []
    for arg, kind in zip(args, kinds):
        t = arg.dtype
        if kind == "t" and (is_text(t) or pa.types.is_null(t)):
            out.append(cast(arg, TEXT))
        elif kind == "i" and (pa.types.is_integer(t) or pa.types.is_null(t)
                              or isinstance(arg, Literal) and is_text(t)):
            out.append(cast(arg, pa.int64()))
        elif kind == "b" and (pa.types.is_boolean(t) or pa.types.is_null(t)):
            out.append(cast(arg, pa.bool_()))
        else:
            raise_signature(fn, args)
    return Call(result, fn, tuple(out), options or {})


def raise_signature(fn: str, args: list[Expr]):
    given = ", ".join(sql_name(a.dtype) for a in args)
    known = builtin(fn)
    signature = known.signature if known is not None else ""
    raise BindError(f"function {fn}({given}) does not exist",
                    hint=f"accepted: {signature}" if signature else None)


def _text_arity(kinds: str, required: int | None = None, result: pa.DataType = TEXT):
    return lambda name, args: check_args(name, args, kinds, required, result)


def _unary(kernel):
    def run(args, call):
        return kernel(args[0])
    return run


# ---- case, length, reverse --------------------------------------------------------------

register("upper", _text_arity("t"), _unary(pc.utf8_upper), "upper(text) -> text")
register("lower", _text_arity("t"), _unary(pc.utf8_lower), "lower(text) -> text")
register(["length", "char_length", "character_length"], _text_arity("t", result=pa.int32()),
         _unary(lambda s: pc.cast(pc.utf8_length(s), pa.int32())),
         "length(text) -> integer (characters)")
register("octet_length", _text_arity("t", result=pa.int32()),
         _unary(lambda s: pc.cast(pc.binary_length(s), pa.int32())),
         "octet_length(text) -> integer (bytes)")
register("bit_length", _text_arity("t", result=pa.int32()),
         _unary(lambda s: pc.cast(pc.multiply(pc.binary_length(s), 8), pa.int32())),
         "bit_length(text) -> integer")
register("reverse", _text_arity("t"), _unary(pc.utf8_reverse), "reverse(text) -> text")
# PostgreSQL starts a word after any non-alphanumeric character; pyarrow's title case also
# after a digit ('2abc' -> '2Abc'), a known difference
register("initcap", _text_arity("t"), _unary(pc.utf8_title),
         "initcap(text) -> text (first letter of each word upper case)")


#: the longest text a function makes (PostgreSQL's limit for a value, 1 GB): beyond it an
#: error in one line, not a MemoryError
_LONGEST = 1 << 30


def _repeat(args, call):
    s, n = args
    # a NULL count stays NULL (skipping it made the text '' where PostgreSQL gives NULL)
    n = pc.max_element_wise(n, pa.scalar(0, pa.int64()), skip_nulls=False)
    if is_scalar(n) and not n.is_valid:
        return null_of(TEXT)
    size = pc.max(pc.multiply(pc.binary_length(s), n)).as_py()
    if (size or 0) > _LONGEST:
        raise RuntimeFailure(f"repeat(): requested length {size:,} too large")
    return pc.binary_repeat(s, n)


register("repeat", _text_arity("ti"), _repeat, "repeat(text, integer) -> text")

# ---- substrings -------------------------------------------------------------------------


def _substr(args, call):
    s, start = args[0], args[1]
    count = args[2] if len(args) > 2 else None
    if count is not None and any_true(pc.less(count, 0)):
        raise RuntimeFailure("negative substring length not allowed in substr()")
    if is_scalar(start) and (count is None or is_scalar(count)):
        if not start.is_valid or (count is not None and not count.is_valid):
            return null_of(TEXT)
        first = start.as_py() - 1
        if count is None:
            return pc.utf8_slice_codeunits(s, max(first, 0))
        stop = first + count.as_py()
        if stop <= 0:
            return pc.utf8_slice_codeunits(s, 0, 0)
        return pc.utf8_slice_codeunits(s, max(first, 0), stop)

    def expr(s, start, count=None):
        offset = (start - 1).clip(lower_bound=0)
        if count is None:
            return s.str.slice(offset)
        return s.str.slice(offset, (start - 1 + count - offset).clip(lower_bound=0))

    # Polars slices to the end for a NULL start or count; SQL's answer is NULL
    sliced = polars_eval(expr, args, TEXT)
    return sliced if is_scalar(sliced) else propagate_nulls(sliced, *args[1:])


register(["substr", "substring"], _text_arity("tii", 2), _substr,
         "substr(text, start [, count]) -> text; SUBSTRING(text FROM start FOR count)")


def _left(args, call):
    s, n = args
    if is_scalar(n):
        if not n.is_valid:
            return null_of(TEXT)
        return pc.utf8_slice_codeunits(s, 0, n.as_py())
    return polars_eval(lambda s, n: s.str.head(n), args, TEXT)


def _right(args, call):
    s, n = args
    if is_scalar(n):
        if not n.is_valid:
            return null_of(TEXT)
        k = n.as_py()
        if k == 0:
            return pc.utf8_slice_codeunits(s, 0, 0)
        return pc.utf8_slice_codeunits(s, -k if k > 0 else -k)
    return polars_eval(lambda s, n: s.str.tail(n), args, TEXT)


register("left", _text_arity("ti"), _left,
         "left(text, n) -> first n characters (all but the last |n| when n < 0)")
register("right", _text_arity("ti"), _right,
         "right(text, n) -> last n characters (all but the first |n| when n < 0)")


def _pad(left: bool):
    def run(args, call):
        s, n = args[0], args[1]
        fill = args[2] if len(args) > 2 else pa.scalar(" ")
        if not is_scalar(fill):
            raise RuntimeFailure(f"{call.func}() needs a constant fill text")
        if not fill.is_valid:
            return null_of(TEXT)
        text = fill.as_py()
        n = pc.max_element_wise(n, pa.scalar(0, pa.int64()), skip_nulls=False)
        if is_scalar(n) and not n.is_valid:
            return null_of(TEXT)
        widest = pc.max(n).as_py() if not is_scalar(n) else n.as_py()
        if (widest or 0) > _LONGEST:
            raise RuntimeFailure(f"{call.func}(): requested length {widest:,} too large")
        # the fill repeated enough for the widest pad (text of the query, not of rows)
        long_fill = text * ((widest or 0) // max(len(text), 1) + 1) if text else ""

        def expr(s, n):
            import polars as pl

            body = s.str.head(n)
            need = (n - body.str.len_chars()).clip(lower_bound=0)
            pad = pl.lit(long_fill).str.head(need)
            return pl.concat_str([pad, body] if left else [body, pad])

        padded = polars_eval(expr, [s, n], TEXT)
        return padded if is_scalar(padded) else propagate_nulls(padded, n)   # NULL length
    return run


register("lpad", _text_arity("tit", 2), _pad(True),
         "lpad(text, length [, fill]) -> text padded on the left (or cut to length)")
register("rpad", _text_arity("tit", 2), _pad(False),
         "rpad(text, length [, fill]) -> text padded on the right (or cut to length)")

# ---- concatenation ----------------------------------------------------------------------


def _as_text_arg(arg: Expr, fn: str) -> Expr:
    """Any value joins text as CAST(value AS TEXT) writes it: a boolean as true/false, as
    DuckDB writes it in ||, concat() and concat_ws() and PostgreSQL in || (its concat()
    writes t/f; caudal wrote t/f in all three)."""
    if is_text(arg.dtype) or pa.types.is_null(arg.dtype):
        return cast(arg, TEXT) if pa.types.is_null(arg.dtype) else arg
    if pa.types.is_list(arg.dtype) or pa.types.is_struct(arg.dtype):
        raise BindError(f"{fn} cannot join {sql_name(arg.dtype)} values into text")
    return cast(arg, TEXT)


def _bind_concat(name: str, args: list[Expr]) -> Call:
    if not args:
        raise BindError("concat() takes at least one argument")
    return Call(TEXT, "concat", tuple(_as_text_arg(a, "concat()") for a in args))


def _concat(args, call):
    return pc.binary_join_element_wise(*args, "", null_handling="replace",
                                       null_replacement="")


register("concat", _bind_concat, _concat, "concat(any, ...) -> text (NULLs are skipped)")


def _bind_concat_ws(name: str, args: list[Expr]) -> Call:
    if len(args) < 2:
        raise BindError("concat_ws() takes a separator and at least one value")
    sep = check_args("concat_ws", args[:1], "t").args[0]
    separator = constant_value(sep, "concat_ws", "separator")
    return Call(TEXT, "concat_ws", tuple(_as_text_arg(a, "concat_ws()") for a in args[1:]),
                {"separator": separator})


def _concat_ws(args, call):
    # pyarrow's join with null_handling='skip' drops rows whose values are all NULL, so
    # each present value gets the separator in front and the first one loses it
    sep = call.options["separator"]
    if sep is None:
        return null_of(TEXT)
    arrays, scalar = broadcast(list(args))
    parts = [pc.fill_null(pc.binary_join_element_wise(sep, a, ""), "") for a in arrays]
    joined = pc.binary_join_element_wise(*parts, "")
    return finish(pc.utf8_slice_codeunits(joined, len(sep)), scalar)


register("concat_ws", _bind_concat_ws, _concat_ws,
         "concat_ws(separator, any, ...) -> text (NULL values are skipped)")


def _bind_concat_op(name: str, args: list[Expr]) -> Call:
    arity("||", args, 2)
    a, b = args
    if not any(is_text(x.dtype) for x in args) and not all(
            pa.types.is_null(x.dtype) for x in args):
        raise BindError(f"operator || does not take {sql_name(a.dtype)} and {sql_name(b.dtype)}",
                        hint="one side must be text (cast the other with ::text)")
    return Call(TEXT, "concat_op", (_as_text_arg(a, "||"), _as_text_arg(b, "||")))


register("concat_op", _bind_concat_op,
         lambda args, call: pc.binary_join_element_wise(
             *args, "", null_handling="emit_null"),
         "text || any -> text (NULL if either side is NULL)", internal=True)

# ---- trimming, replacing, splitting -------------------------------------------------------


def _bind_trim(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "tt", 1)
    chars = constant_value(call.args[1], name, "set of characters") if len(args) > 1 else " "
    return Call(TEXT, name, call.args[:1], {"characters": chars})


def _trim(kernel):
    def run(args, call):
        chars = call.options["characters"]
        if chars is None:
            return null_of(TEXT)
        if chars == "":
            return args[0]
        return kernel(args[0], characters=chars)
    return run


register(["btrim", "trim"], _bind_trim, _trim(pc.utf8_trim),
         "btrim(text [, characters]) -> text; TRIM([BOTH|LEADING|TRAILING] [chars] FROM text)")
register("ltrim", _bind_trim, _trim(pc.utf8_ltrim), "ltrim(text [, characters]) -> text")
register("rtrim", _bind_trim, _trim(pc.utf8_rtrim), "rtrim(text [, characters]) -> text")


def _replace(args, call):
    s, old, new = args
    if is_scalar(old) and is_scalar(new):
        if not (old.is_valid and new.is_valid):
            return null_of(TEXT)
        if old.as_py() == "":
            return s
        return pc.replace_substring(s, pattern=old.as_py(), replacement=new.as_py())

    # Polars cannot replace patterns that vary by row; DuckDB's replace() can
    return duckdb_eval("CASE WHEN c1 = '' THEN c0 ELSE replace(c0, c1, c2) END", args, TEXT,
                       "replace")


register("replace", _text_arity("ttt"), _replace,
         "replace(text, from, to) -> text with every from replaced")


def _split(s, delimiter) -> pa.Array:
    """A list of parts per row; an empty delimiter keeps the whole text as one part."""
    if is_scalar(delimiter):
        if not delimiter.is_valid:
            return pa.nulls(len(s), pa.list_(TEXT))
        if delimiter.as_py() == "":
            return interleave([s], pc.is_valid(s))
        return pc.split_pattern(s, pattern=delimiter.as_py())
    import polars as pl

    return polars_eval(lambda s, d: pl.when(d == "").then(pl.concat_list([s]))
                       .otherwise(s.str.split(d)), [s, delimiter], pa.list_(TEXT))


def _split_part(args, call):
    arrays, scalar = broadcast(args)
    s, delimiter, n = arrays
    if any_true(pc.equal(n, 0)):
        raise RuntimeFailure("split_part(): field position must not be zero")
    parts = _split(s, args[1] if is_scalar(args[1]) else delimiter)
    index = pc.if_else(pc.greater(n, 0), pc.subtract(n, 1), n)
    out = list_get(parts, index, one_based=False)
    out = propagate_nulls(pc.fill_null(out, ""), s, args[1], n)
    return finish(out, scalar)


register("split_part", _text_arity("tti"), _split_part,
         "split_part(text, delimiter, n) -> the n-th part (from the end when n < 0), or ''")


def _string_to_array(args, call):
    arrays, scalar = broadcast(args)
    s = arrays[0]
    parts = _split(s, args[1] if is_scalar(args[1]) else arrays[1])
    # PostgreSQL: the empty string is the empty array
    empty = pa.scalar([], pa.list_(TEXT))
    out = pc.if_else(pc.equal(s, ""), empty, parts)
    return finish(out, scalar)


register("string_to_array", _text_arity("tt", result=pa.list_(TEXT)), _string_to_array,
         "string_to_array(text, delimiter) -> text[]")


# ---- search -----------------------------------------------------------------------------


def _strpos(args, call):
    s, sub = args
    if is_scalar(sub):
        if not sub.is_valid:
            return null_of(pa.int32())
        if sub.as_py() == "":
            return pc.if_else(pc.is_valid(s), pa.scalar(1, pa.int32()), null_of(pa.int32()))
        parts = pc.split_pattern(s, pattern=sub.as_py(), max_splits=1)
        found = pc.equal(pc.list_value_length(parts), 2)
        before = pc.utf8_length(pc.list_element(parts, 0))
        return pc.cast(pc.if_else(found, pc.add(before, 1), 0), pa.int32())

    def expr(s, sub):
        import polars as pl

        parts = s.str.split(sub)
        position = pl.when(parts.list.len() > 1).then(
            parts.list.first().str.len_chars() + 1).otherwise(0)
        return pl.when(s.is_null() | sub.is_null()).then(None).when(sub == "").then(1) \
            .otherwise(position)

    return polars_eval(expr, args, pa.int32())


def _bind_strpos(name: str, args: list[Expr]) -> Call:
    return check_args(name, args, "tt", result=pa.int32())


register(["strpos", "position"], _bind_strpos, _strpos,
         "strpos(text, substring) -> integer (1-based, 0 if absent); POSITION(sub IN text)")


def _affix(kernel, polars_method):
    def run(args, call):
        s, p = args
        if is_scalar(p):
            if not p.is_valid:
                return null_of(pa.bool_())
            return kernel(s, pattern=p.as_py())
        return polars_eval(lambda s, p: getattr(s.str, polars_method)(p), args, pa.bool_())
    return run


register("starts_with", _text_arity("tt", result=pa.bool_()),
         _affix(pc.starts_with, "starts_with"), "starts_with(text, prefix) -> boolean")
register("ends_with", _text_arity("tt", result=pa.bool_()),
         _affix(pc.ends_with, "ends_with"), "ends_with(text, suffix) -> boolean")

# ---- LIKE -------------------------------------------------------------------------------


def like_to_backslash(pattern: str, escape: str | None) -> str:
    """A LIKE pattern with escape character ``escape`` rewritten to pyarrow's backslash
    escapes (the pattern is query text, read once when planning)."""
    if escape == "\\":
        return pattern
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if escape and ch == escape and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append("\\" + nxt if nxt in "%_\\" else nxt)
            i += 2
            continue
        out.append("\\\\" if ch == "\\" else ch)
        i += 1
    return "".join(out)


def _bind_like(name: str, args: list[Expr]) -> Call:
    arity("LIKE", args, 2, 3)
    call = check_args("like", args, "ttt", 2, pa.bool_())
    fn = "ILIKE" if name == "ilike" else "LIKE"
    escape = constant_value(call.args[2], fn, "ESCAPE character") if len(args) > 2 else "\\"
    if escape is not None and len(escape) > 1:
        raise BindError(f"{fn} ESCAPE must be one character, got {escape!r}")
    pattern = constant_value(call.args[1], fn, "pattern", default=_COLUMN)
    if pattern is _COLUMN:  # a pattern per row (Flink's CalcITCase.testLike): DuckDB's LIKE
        return Call(pa.bool_(), "like", call.args[:2],
                    {"escape": escape, "ignore_case": name == "ilike"})
    converted = None if pattern is None else like_to_backslash(pattern, escape or None)
    return Call(pa.bool_(), "like", call.args[:1],
                {"pattern": converted, "ignore_case": name == "ilike"})


#: a LIKE pattern that is not a constant
_COLUMN = object()


def _like(args, call):
    if len(args) == 2:
        op = "ILIKE" if call.options["ignore_case"] else "LIKE"
        escape = call.options["escape"]
        if escape is None:  # ESCAPE NULL: the result is NULL, as the pattern's would be
            return null_of(pa.bool_())
        return duckdb_eval(f"c0 {op} c1 ESCAPE ?" if escape else f"c0 {op} c1", args,
                           pa.bool_(), op, params=[escape] if escape else ())
    if call.options["pattern"] is None:
        return null_of(pa.bool_())
    return pc.match_like(args[0], pattern=call.options["pattern"],
                         ignore_case=call.options["ignore_case"])


register("like", _bind_like, _like, "text LIKE pattern [ESCAPE char] -> boolean",
         internal=True)
register("ilike", _bind_like, _like, "text ILIKE pattern -> boolean (case-insensitive)",
         internal=True)

# ---- regular expressions ----------------------------------------------------------------

_FLAGS = {"i": "i", "c": "", "n": "m", "m": "m", "p": "", "w": "m", "s": "", "x": "",
          "g": ""}


def regex_options(fn: str, flags: str | None, allow_global: bool) -> tuple[str, bool]:
    """PostgreSQL regex flags as an RE2 prefix, and whether 'g' (replace all) was given.

    PostgreSQL's '.' matches a newline unless 'n' is given; RE2's only with (?s)."""
    flags = flags or ""
    unknown = [f for f in flags if f not in _FLAGS or (f == "g" and not allow_global)]
    if unknown:
        raise BindError(f"{fn}() does not know regex flag {unknown[0]!r}",
                        hint="flags: i (ignore case), c, n (newline-sensitive)"
                             + (", g (every match)" if allow_global else ""))
    newline_sensitive = any(f in "nmw" for f in flags)
    case_insensitive = flags.rfind("i") > flags.rfind("c")
    prefix = "(?" + ("i" if case_insensitive else "") + ("m" if newline_sensitive else "s") + ")"
    return prefix, "g" in flags


def _check_regex(fn: str, pattern: str) -> None:
    """Refuse, when planning, a pattern the kernels' engines (RE2 in pyarrow, Rust's regex in
    Polars: the same syntax) would reject at run time: lookaround, backreferences."""
    try:
        re.compile(pattern)
        pc.match_substring_regex(pa.array([""], TEXT), pattern=pattern)
    except (re.error, pa.ArrowInvalid) as e:
        reason = str(e).removeprefix("Invalid regular expression: ")
        raise BindError(f"{fn}(): invalid regular expression {pattern!r}: {reason}",
                        hint="RE2 syntax: no lookaround (?=…) (?<=…), no backreferences "
                             "\\1 in a pattern") from None


def _bind_regexp_like(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "ttt", 2, pa.bool_())
    flags = constant_value(call.args[2], name, "flags text") if len(args) > 2 else ""
    if name == "regexp_ilike":
        flags = (flags or "") + "i"
    prefix, _ = regex_options(name, flags, allow_global=False)
    pattern = call.args[1]
    options = {"prefix": prefix}
    if is_constant(pattern):
        text = constant_value(pattern, name, "pattern")
        if text is not None:
            _check_regex(name, text)
        options["pattern"] = text
        return Call(pa.bool_(), "regexp_like", (call.args[0],), options)
    return Call(pa.bool_(), "regexp_like", (call.args[0], pattern), options)


def _regexp_like(args, call):
    prefix = call.options["prefix"]
    if len(args) == 1:
        pattern = call.options["pattern"]
        if pattern is None:
            return null_of(pa.bool_())
        return pc.match_substring_regex(args[0], pattern=prefix + pattern)
    import polars as pl

    return polars_eval(lambda s, p: s.str.contains(pl.lit(prefix) + p), args, pa.bool_())


register("regexp_like", _bind_regexp_like, _regexp_like,
         "regexp_like(text, pattern [, flags]) -> boolean; text ~ pattern, text ~* pattern")
register("regexp_ilike", _bind_regexp_like, _regexp_like,
         "text ~* pattern -> boolean (case-insensitive)", internal=True)


def _bind_regexp_replace(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "tttt", 3)
    pattern = constant_value(call.args[1], name, "pattern")
    replacement = constant_value(call.args[2], name, "replacement")
    flags = constant_value(call.args[3], name, "flags text") if len(args) > 3 else ""
    prefix, every = regex_options(name, flags, allow_global=True)
    if pattern is not None:
        _check_regex(name, pattern)
    if replacement is not None:
        # PostgreSQL's \& is the whole match, RE2's \0
        replacement = re.sub(r"\\&", r"\\0", replacement)
    return Call(TEXT, "regexp_replace", call.args[:1],
                {"pattern": None if pattern is None else prefix + pattern,
                 "replacement": replacement, "global": every})


def _regexp_replace(args, call):
    o = call.options
    if o["pattern"] is None or o["replacement"] is None:
        return null_of(TEXT)
    return pc.replace_substring_regex(args[0], pattern=o["pattern"],
                                      replacement=o["replacement"],
                                      max_replacements=None if o["global"] else 1)


register("regexp_replace", _bind_regexp_replace, _regexp_replace,
         "regexp_replace(text, pattern, replacement [, flags]) -> text (first match; "
         "flag 'g' for every match)")

_GROUP = re.compile(r"\\.|\[(?:\\.|[^\]])*\]|\((?!\?)")


def name_groups(pattern: str) -> tuple[str, int]:
    """``pattern`` with its capturing groups named g1, g2, ... (pyarrow extracts named groups
    only) and their count; a pattern without groups becomes one group around it all."""
    count = 0

    def rename(m: re.Match) -> str:
        nonlocal count
        if m.group(0) != "(":
            return m.group(0)
        count += 1
        return f"(?P<g{count}>"

    named = _GROUP.sub(rename, pattern)
    if count == 0:
        return "(?P<g1>" + pattern + ")", 1
    return named, count


def _bind_regexp_match(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "ttt", 2, pa.list_(TEXT))
    pattern = constant_value(call.args[1], name, "pattern")
    flags = constant_value(call.args[2], name, "flags text") if len(args) > 2 else ""
    prefix, _ = regex_options(name, flags, allow_global=False)
    if pattern is not None:
        _check_regex(name, pattern)
        pattern, groups = name_groups(pattern)
        pattern = prefix + pattern
    else:
        groups = 0
    return Call(pa.list_(TEXT), "regexp_match", call.args[:1],
                {"pattern": pattern, "groups": groups})


def _regexp_match(args, call):
    arrays, scalar = broadcast(args)
    s = arrays[0]
    if call.options["pattern"] is None:
        return finish(pa.nulls(len(s), pa.list_(TEXT)), scalar)
    found = pc.extract_regex(s, pattern=call.options["pattern"])
    fields = [pc.struct_field(found, [i]) for i in range(call.options["groups"])]
    return finish(interleave(fields, pc.is_valid(found)), scalar)


register("regexp_match", _bind_regexp_match, _regexp_match,
         "regexp_match(text, pattern [, flags]) -> text[] of the first match's groups, or "
         "NULL")


def _bind_regexp_split(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "ttt", 2, pa.list_(TEXT))
    pattern = constant_value(call.args[1], name, "pattern")
    flags = constant_value(call.args[2], name, "flags text") if len(args) > 2 else ""
    prefix, _ = regex_options(name, flags, allow_global=False)
    if pattern is not None:
        _check_regex(name, pattern)
    return Call(pa.list_(TEXT), name, call.args[:1],
                {"pattern": None if pattern is None else prefix + pattern})


def _regexp_split(args, call):
    if call.options["pattern"] is None:
        return null_of(pa.list_(TEXT))
    return pc.split_pattern_regex(args[0], pattern=call.options["pattern"])


register("regexp_split_to_array", _bind_regexp_split, _regexp_split,
         "regexp_split_to_array(text, pattern [, flags]) -> text[]")

# ---- through DuckDB: md5, ascii, chr, translate -----------------------------------------


def _duck(sql: str, dtype: pa.DataType):
    def run(args, call):
        return duckdb_eval(sql, args, dtype, call.func)
    return run


register("md5", _text_arity("t"), _duck("md5(c0)", TEXT), "md5(text) -> text (hex digest)")
register("ascii", _text_arity("t", result=pa.int32()),
         _duck("CASE WHEN c0 = '' THEN 0 ELSE ascii(c0) END", pa.int32()),
         "ascii(text) -> integer code of the first character")
register("chr", _text_arity("i"), _duck("chr(c0::INTEGER)", TEXT),
         "chr(integer) -> the character with that code")
register("translate", _text_arity("ttt"), _duck("translate(c0, c1, c2)", TEXT),
         "translate(text, from, to) -> text with each character of from replaced by the "
         "one at the same place in to")


# ---- Flink's string functions: regexp_extract, regexp, split_index, locate ----------------
# Java regular expressions are read by RE2 / Rust regex: the same for common patterns (no
# backreferences or lookaround, which are refused as invalid when planning).


def _bind_regexp_extract(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "tti", 2)
    pattern = constant_value(call.args[1], name, "pattern")
    index = constant_value(call.args[2], name, "group index") if len(args) > 2 else 0
    if pattern is not None:
        _check_regex(name, pattern)
    return Call(TEXT, name, call.args[:1], {"pattern": pattern, "group": index})


def _regexp_extract(args, call):
    pattern, group = call.options["pattern"], call.options["group"]
    if pattern is None or group is None or group < 0:
        return null_of(TEXT)
    # Polars gives NULL for no match, for a group the match skipped and for a group the
    # pattern does not have, as Flink does (group 0 is the whole match)
    return polars_eval(lambda s: s.str.extract(pattern, group), args, TEXT)


register("regexp_extract", _bind_regexp_extract, _regexp_extract,
         "regexp_extract(text, pattern [, group]) -> text: the group (0, the default, is "
         "the whole match) of the first match, NULL if none")


def _bind_regexp(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "tt", result=pa.bool_())
    pattern = constant_value(call.args[1], name, "pattern")
    if pattern:
        _check_regex(name, pattern)
    return Call(pa.bool_(), name, call.args[:1], {"pattern": pattern})


def _regexp(args, call):
    pattern = call.options["pattern"]
    if pattern is None:
        return null_of(pa.bool_())
    if pattern == "":  # Flink: an empty pattern matches nothing
        return propagate_nulls(pa.repeat(pa.scalar(False), len(args[0])), args[0]) \
            if not is_scalar(args[0]) else pa.scalar(False if args[0].is_valid else None,
                                                     pa.bool_())
    return pc.match_substring_regex(args[0], pattern=pattern)


register("regexp", _bind_regexp, _regexp,
         "regexp(text, pattern) -> boolean: whether some part of text matches (Flink)")


def _bind_split_index(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "tti")
    separator = constant_value(call.args[1], name, "separator")
    return Call(TEXT, name, (call.args[0], call.args[2]), {"separator": separator})


def _split_index(args, call):
    arrays, scalar = broadcast(args)
    s, index = arrays
    sep = call.options["separator"]
    if sep is None:
        return finish(pa.nulls(len(s), TEXT), scalar)
    # Flink splits on the whole separator keeping empty parts; an empty separator splits
    # on each whitespace character, and the empty text has no parts at all
    parts = pc.split_pattern_regex(s, pattern=r"\s") if sep == "" else \
        pc.split_pattern(s, pattern=sep)
    index = pc.if_else(pc.less(index, 0), null_of(pa.int64()), index)
    out = list_get(parts, index, one_based=False)
    out = pc.if_else(pc.equal(s, ""), null_of(TEXT), out)
    return finish(out, scalar)


register("split_index", _bind_split_index, _split_index,
         "split_index(text, separator, n) -> the n-th part (from 0), NULL when out of range")


def _bind_locate(name: str, args: list[Expr]) -> Call:
    call = check_args(name, args, "tti", 2, pa.int32())
    if len(args) == 2:
        return Call(pa.int32(), "strpos", (call.args[1], call.args[0]))
    return Call(pa.int32(), name, (call.args[1], call.args[0], call.args[2]))


def _locate(args, call):
    s, sub, start = args
    arrays, scalar = broadcast([s, sub, start])
    s, sub, start = arrays
    first = pc.max_element_wise(start, pa.scalar(1, pa.int64()))  # Java: before 1 is 1
    tail = polars_eval(lambda s, k: s.str.slice(k - 1), [s, first], TEXT)
    found = _strpos([tail, sub if not is_scalar(args[1]) else args[1]], call)
    found = pc.cast(found, pa.int64())
    out = pc.if_else(pc.greater(found, 0), pc.add(found, pc.subtract(first, 1)), 0)
    return finish(propagate_nulls(pc.cast(out, pa.int32()), start), scalar)


register("locate", _bind_locate, _locate,
         "locate(substring, text [, start]) -> integer: 1-based position of substring in "
         "text at or after start, 0 if absent (Flink)")
register("instr", _bind_strpos, _strpos,
         "instr(text, substring) -> integer (1-based, 0 if absent), as strpos")
