"""The generated parts of the SQL reference (docs/sql.md): functions, aggregates and the WITH
options of connectors and formats, read from the registries so the reference cannot drift
from the code.

``python -m caudal.sql.reference`` rewrites the generated sections of docs/sql.md in place
(``--check`` only says whether they are current); ``caudal functions --markdown`` prints
the function tables. A section is the text between ``<!-- generated: NAME -->`` and
``<!-- end generated -->``; everything else in the file is written by hand.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from caudal.connectors import registry as connectors
from caudal.formats import FORMATS
from caudal.formats import get as get_format
from caudal.plan.aggregates import ALIASES, SIGNATURES
from caudal.plan.functions.catalog import FUNCTIONS  # registers every function

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
_SECTION = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)

#: function module -> section title, in the order they are listed
_FAMILIES = {
    "operators": "Operators and comparisons", "conditional": "Conditional",
    "math": "Numbers", "strings": "Text", "time": "Date and time",
    "intervals": "Intervals", "casts": "Casts", "json": "JSON", "nested": "Arrays and structs",
    "udf_classes": "Java UDF classes known by name (CREATE FUNCTION f AS '<class>')",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _functions_by_family() -> dict[str, list[tuple[str, list[str], str]]]:
    """family -> [(name, aliases, signature)] of the functions callable by name."""
    seen: dict[int, tuple[str, list[str], str, str]] = {}
    for name, fn in FUNCTIONS.items():
        if fn.internal:
            continue
        entry = seen.get(id(fn))
        if entry is None:
            family = fn.kernel.__module__.rsplit(".", 1)[-1]
            seen[id(fn)] = (fn.name if fn.name == name or fn.name in FUNCTIONS else name,
                            [], fn.signature, family)
        elif name != entry[0]:
            entry[1].append(name)
    out: dict[str, list[tuple[str, list[str], str]]] = {}
    for primary, aliases, signature, family in seen.values():
        out.setdefault(family, []).append((primary, sorted(aliases), signature))
    order = list(_FAMILIES) + sorted(f for f in out if f not in _FAMILIES)
    return {f: sorted(out[f]) for f in order if f in out}


def functions_markdown() -> str:
    """The scalar functions, one table per family."""
    parts = []
    for family, rows in _functions_by_family().items():
        title = _FAMILIES.get(family, family.replace("_", " ").capitalize())
        parts.append(f"#### {title}\n\n| function | signature and meaning |\n|---|---|")
        for name, aliases, signature in rows:
            names = ", ".join(f"`{n}`" for n in [name, *aliases])
            parts.append(f"| {names} | {_cell(signature)} |")
        parts.append("")
    return "\n".join(parts)


def aggregates_markdown() -> str:
    spellings: dict[str, list[str]] = {}
    for alias, canonical in ALIASES.items():
        spellings.setdefault(canonical, []).append(alias)
    lines = ["| aggregate | signature and meaning |", "|---|---|"]
    for name in sorted(SIGNATURES):
        # sqlglot's internal spellings (varpop, logicaland, …) are not SQL names users write
        names = [name] + sorted(a for a in spellings.get(name, []) if a != name and
                                ("_" in a or a in ("variance", "stddev", "every", "mean",
                                                   "first", "last", "listagg")))
        lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {_cell(SIGNATURES[name])} |")
    return "\n".join(lines) + "\n"


def _options_table(options: dict[str, str]) -> list[str]:
    lines = ["| option | meaning |", "|---|---|"]
    for key in sorted(options):
        lines.append(f"| `{key}` | {_cell(options[key])} |")
    return lines


def connectors_markdown() -> str:
    """Every public connector: source / sink, and its WITH options."""
    parts = ["Every table accepts these options, whatever its connector:", "",
             *_options_table(connectors.COMMON_OPTIONS), ""]
    for name in connectors.public_connectors():
        module = importlib.import_module(connectors.CONNECTORS[name])
        roles = [(role, cls) for role, cls in (("source", getattr(module, "SOURCE", None)),
                                               ("sink", getattr(module, "SINK", None)))
                 if cls is not None]
        parts.append(f"#### `{name}` ({' and '.join(r for r, _ in roles)})\n")
        for role, cls in roles:
            options = getattr(cls, "OPTIONS", {})
            if len(roles) > 1:
                parts.append(f"As a {role}:\n")
            parts.extend(_options_table(options) if options else ["No options of its own."])
            parts.append("")
    return "\n".join(parts)


def formats_markdown() -> str:
    parts = []
    for name in FORMATS:
        module = get_format(name)
        options = getattr(module, "OPTIONS", {})
        doc = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").rstrip(":")
        parts.append(f"#### `{name}`\n\n{doc}\n")
        if options:
            parts.extend(_options_table(options))
            parts.append("")
    return "\n".join(parts)


SECTIONS = {"functions": functions_markdown, "aggregates": aggregates_markdown,
            "connectors": connectors_markdown, "formats": formats_markdown}


def render(text: str) -> str:
    """``text`` (docs/sql.md) with every generated section rewritten from the registries."""
    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in SECTIONS:
            raise KeyError(f"docs/sql.md names an unknown generated section {name!r}")
        return match.group(1) + "\n" + SECTIONS[name]().rstrip("\n") + "\n\n" + match.group(4)

    return _SECTION.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m caudal.sql.reference",
                                     description="Regenerate the generated parts of "
                                                 "docs/sql.md from the registries.")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/sql.md is out of date, without writing")
    parser.add_argument("--file", type=Path, default=DOC)
    args = parser.parse_args(argv)
    current = args.file.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print(f"{args.file} is out of date: run python -m caudal.sql.reference",
                  file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        args.file.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
