"""Pages of the documentation generated from the code at build time (a Sphinx extension).

``docs/configuration.md`` and ``docs/cli.md`` each hold a marker line, ``% galmet:config`` and
``% galmet:cli``; when Sphinx reads the page, the marker is replaced by Markdown made from the
config schema (:func:`galmet.config.load_schema`: every key, its type, default, description and
allowed values, the registries' included) or from the parsers of the ``galmet`` subcommands
(:data:`galmet.cli.SUBCOMMANDS`, each module's ``cli_parser()``). A page without its marker
fails the build.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from pathlib import Path

MARKERS = {"configuration": "% galmet:config", "cli": "% galmet:cli"}

_SPECIAL = re.compile(r"([\\*_{}\[\]<>|#!~&$])")


def escape(text: str) -> str:
    """``text`` as literal Markdown on one line of a table: no emphasis, HTML, roles or cell
    breaks; its `backquoted` parts stay code."""
    text = " ".join(str(text).split())
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backquote: all literal
        return re.sub(r"([`\\*_{}\[\]<>|#!~&$])", r"\\\1", text)
    return "".join(code(part) if i % 2 else _SPECIAL.sub(r"\\\1", part) for i, part in enumerate(parts))


def code(value) -> str:
    """``value`` as an inline code span of a table cell (``|`` escaped for the table)."""
    return "`" + str(value).replace("|", "\\|") + "`"


def _literal(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


# ---- configuration ----

_BOUNDS = (("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"),
           ("exclusiveMaximum", "< {}"), ("minItems", "at least {} item"), ("maxItems", "at most {} item"),
           ("minLength", "at least {} character"))


def _bound(fmt: str, n) -> str:
    return fmt.format(n) + ("s" if fmt.endswith(("item", "character")) and n != 1 else "")


def type_text(schema: dict) -> str:
    """What a schema node accepts, in words: types, allowed values, bounds."""
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(type_text(s) for s in schema[key])
    if "const" in schema:
        return code(_literal(schema["const"]))
    if "enum" in schema:
        return "one of " + ", ".join(code(_literal(v)) for v in schema["enum"])
    types = schema.get("type", [])
    words = []
    for t in [types] if isinstance(types, str) else types:
        if t == "array":
            items = schema.get("items")
            item = type_text(items) if items else "any"
            t = "list of " + (item.replace("one of", "values from", 1) if item.startswith("one of") else item)
        elif t == "object" and isinstance(schema.get("additionalProperties"), dict):
            t = "mapping of names to " + type_text(schema["additionalProperties"])
        words.append(t)
    text = " or ".join(words) if words else "any"
    limits = [_bound(fmt, schema[k]) for k, fmt in _BOUNDS if k in schema]
    if schema.get("minItems", -1) == schema.get("maxItems"):
        limits = [x for x in limits if "item" not in x]
        limits.append(_bound("exactly {} item", schema["minItems"]))
    if schema.get("uniqueItems"):
        limits.append("no repeats")
    if "pattern" in schema:
        limits.append("matching " + code(schema["pattern"]))
    if not limits:
        return text
    return text + ("; " + ", ".join(limits) if "array" in types else " (" + ", ".join(limits) + ")")


def config_rows(properties: dict, prefix: str = ""):
    """``(key, schema)`` of every key under ``properties``, depth first, dotted (``train.stage2.lrs``)."""
    for name, schema in properties.items():
        key = f"{prefix}{name}"
        yield key, schema
        if "properties" in schema:
            yield from config_rows(schema["properties"], key + ".")


def _row(key: str, schema: dict) -> str:
    default = code(_literal(schema["default"])) if "default" in schema else "(none)"
    nested = "properties" in schema
    kind = "section, see below" if nested and "." not in key else ("group" if nested else type_text(schema))
    if nested and schema.get("default") == {}:
        default = ""  # its keys' defaults follow
    return f"| {code(key)} | {kind} | {default} | {escape(schema.get('description', ''))} |"


def config_markdown(schema: dict) -> str:
    """The configuration reference: a table of the top-level keys, then one section per
    top-level group with a row per key (nested groups flattened to dotted keys)."""
    head = "| key | type | default | description |\n|---|---|---|---|"
    top = schema["properties"]
    out = ["## Top-level keys", "", head, *(_row(k, s) for k, s in top.items()), ""]
    for name, section in top.items():
        if "properties" not in section:
            continue
        out += [f"## `{name}`", "", escape(section.get("description", "")), "", head,
                *(_row(k, s) for k, s in config_rows(section["properties"], name + ".")), ""]
    return "\n".join(out)


# ---- command line ----

def _invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    # argparse's own left column of --help ("--levels L [L ...]", "--tta, --no-tta")
    return parser._get_formatter()._format_action_invocation(action)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action) if action.help else ""


def _default(action: argparse.Action) -> str:
    if action.required or action.default in (None, argparse.SUPPRESS, (), []):
        return "(required)" if action.required else ""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return ""
    return code(_literal(action.default))


def parser_markdown(name: str, summary: str, parser: argparse.ArgumentParser) -> str:
    """One subcommand: its usage, description, a row per option and its epilog."""
    parser.prog = f"galmet {name}"
    out = [f"## `galmet {name}`", "", escape(summary[:1].upper() + summary[1:]) + ".", "", "```text",
           parser.format_usage().strip(), "```", ""]
    if parser.description:
        out += [escape(parser.description), ""]
    out += ["| option | default | what |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        out.append(f"| {code(_invocation(parser, action))} | {_default(action)} | {escape(_help(parser, action))} |")
    if parser.epilog:
        out += ["", "```text", parser.epilog.strip("\n"), "```"]
    return "\n".join(out + [""])


def cli_markdown() -> str:
    """The reference of every ``galmet`` subcommand, in the order of :data:`galmet.cli.SUBCOMMANDS`."""
    from galmet.cli import SUBCOMMANDS

    return "\n".join(parser_markdown(name, summary, importlib.import_module(module).cli_parser())
                     for name, (module, summary) in SUBCOMMANDS.items())


# ---- docstrings ----
# The package's docstrings are written for help() and the source as much as for the site: mostly
# reStructuredText (``literals``, :func:`roles`, simple tables), with some plain-text habits that
# docutils reads otherwise (|x| for an absolute value is a substitution; aligned columns whose
# entries run onto indented lines are "unexpected indentation"). Rather than bend them, each
# paragraph that does not parse cleanly as reStructuredText is shown as it is written.

_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
_BARS = re.compile(r"(``.*?``|`[^`]*`)|\|")


def _parses_cleanly(block: list[str]) -> bool:
    """Whether docutils reads ``block`` (one paragraph, Sphinx roles masked) without a warning."""
    from docutils.core import publish_doctree
    from docutils.nodes import system_message

    text = _ROLE.sub(r"``\1``", "\n".join(block))
    if block[-1].rstrip().endswith("::"):  # its literal block is the next paragraph
        text += "\n\n    literal"
    tree = publish_doctree(text, settings_overrides={"report_level": 5, "halt_level": 5, "warning_stream": False})
    return not any(m["level"] >= 2 for m in tree.findall(system_message))


def _verbatim(block: list[str]) -> list[str]:
    indent = min(len(line) - len(line.lstrip()) for line in block)
    plain = [_ROLE.sub(r"\1", line).replace("``", "") for line in block]
    return [" " * indent + ".. code-block:: text", "", *("    " + line for line in plain), ""]


def plain_paragraphs(lines: list[str]) -> list[str]:
    """``lines`` (a docstring) with ``|`` taken literally outside code, and each paragraph that
    docutils would still warn about turned into a literal block; literal blocks are kept."""
    out, block, literal = [], [], False

    def flush():
        nonlocal literal
        if block:
            literal = literal and block[0][:1].isspace()  # the indented paragraphs after a "::"
            if not literal:
                escaped = [_BARS.sub(lambda m: m.group(1) or "\\|", line) for line in block]
                block[:] = escaped if _parses_cleanly(escaped) else _verbatim(block)
            literal = literal or block[-1].rstrip().endswith("::")
            out.extend(block)
            block.clear()

    for line in lines:
        if line.strip():
            block.append(line)
        else:
            flush()
            out.append(line)
    flush()
    return out


def _process_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = plain_paragraphs(lines)


# ---- Sphinx ----

def generated(docname: str) -> tuple[str, list[Path]]:
    """The Markdown that replaces ``docname``'s marker, and the files it was made from."""
    if docname == "configuration":
        from galmet.config import SCHEMA_PATH, load_schema

        return config_markdown(load_schema()), [SCHEMA_PATH]
    import galmet.cli

    return cli_markdown(), sorted(Path(galmet.cli.__file__).parent.glob("*.py"))


def _source_read(app, docname: str, source: list[str]) -> None:
    if docname not in MARKERS:
        return
    from sphinx.errors import ExtensionError

    marker = MARKERS[docname]
    lines = source[0].splitlines()
    if lines.count(marker) != 1:
        raise ExtensionError(f"docs/{docname}.md must hold the line {marker!r} once (where the generated text goes)")
    text, inputs = generated(docname)
    for path in inputs:  # an incremental build rereads the page when these change
        app.env.note_dependency(str(path))
    source[0] = "\n".join(text if line == marker else line for line in lines) + "\n"


def setup(app):
    app.connect("source-read", _source_read)
    app.connect("autodoc-process-docstring", _process_docstring)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
