"""``CREATE [TEMPORARY] [SYSTEM] FUNCTION [IF NOT EXISTS] name AS '<class>' [LANGUAGE JAVA]``:
a name for one of the Java UDF classes caudal re-implements (plan.functions.udf_classes).

The name is an alias: later statements of the script that call ``name(…)`` call the
function the class stands for (their syntax tree is renamed before planning). Any other
class, or another language, is refused: caudal runs no JVM (or Python UDF) code.
"""

from __future__ import annotations

from sqlglot import exp

from caudal.errors import PlanError
from caudal.plan.functions.registry import builtin
from caudal.plan.functions.udf_classes import JAVA_CLASSES
from caudal.sql.scope import position


def add_function(node: exp.Create, aliases: dict[str, str]) -> None:
    """Record the alias a CREATE FUNCTION statement defines."""
    name = node.this.name
    ln, col = position(node.this)
    target = node.expression
    language = next((p for p in (node.args.get("properties") or exp.Properties(
        expressions=[])).expressions if isinstance(p, exp.LanguageProperty)), None)
    if language is not None and language.name.upper() not in ("JAVA", "SCALA"):
        raise PlanError(f"CREATE FUNCTION {name} … LANGUAGE {language.name}: only the Java "
                        "UDF classes caudal re-implements are accepted", line=ln, col=col,
                        hint="known classes: " + ", ".join(JAVA_CLASSES))
    cls = target.this if isinstance(target, exp.Literal) and target.is_string else None
    if cls not in JAVA_CLASSES:
        raise PlanError(f"CREATE FUNCTION {name} AS {target.sql() if target else '?'}: caudal "
                        "runs no JVM code and does not know this class", line=ln, col=col,
                        hint="known classes: " + ", ".join(
                            f"{c} ({f})" for c, f in JAVA_CLASSES.items()))
    key = name.lower()
    known = builtin(key)
    if key in aliases or (known is not None and known.name != JAVA_CLASSES[cls]):
        if not node.args.get("exists"):
            raise PlanError(f"function {name}() is already defined", line=ln, col=col,
                            hint="choose another name, or CREATE FUNCTION IF NOT EXISTS")
        return
    aliases[key] = JAVA_CLASSES[cls]


def rename_functions(node: exp.Expression, aliases: dict[str, str]) -> None:
    """Call the functions the aliases stand for, in place."""
    if not aliases:
        return
    for call in node.find_all(exp.Anonymous):
        target = aliases.get(str(call.this).lower())
        if target is not None:
            call.set("this", target)
