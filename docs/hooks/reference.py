"""MkDocs hook: the Reference pages, generated at build time from the sources of truth.

The command line reference is read from the argparse parser (``bandit_router.cli``), the
proto reference from ``proto/bandit_router/v1/*.proto`` (compiled with ``--include_source_info``
so the comments come through), and the experiment-file reference from the JSON Schema the
package ships. Nothing generated is committed, so none of it can drift from the code: a new
flag, RPC or schema key is in the next build. ``tests/test_docs.py`` builds the site and
checks that every command, RPC and schema property is on these pages.

Each page is a pure function of its source (``cli_page``, ``proto_page``, ``schema_page``);
``on_files`` only hands the results to MkDocs as generated files.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
PROTO_PAGE = "reference/proto.md"
SCHEMA_PAGE = "reference/experiment-file.md"

#: Width of the usage lines; fixed so the page does not depend on the building terminal.
USAGE_WIDTH = 88


# -- shared Markdown helpers -----------------------------------------------------------------


def escape_prose(text: str) -> str:
    """``text`` safe as Markdown prose: ``<``, ``>`` and ``&`` outside code spans become
    entities (a comment saying ``map<string, double>`` would otherwise be read as an HTML tag),
    while code spans are left alone (inside them Markdown shows entities literally)."""
    parts = re.split(r"(`+[^`]*`+)", text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts)


def table_cell(text: str) -> str:
    """Prose for one table cell: one line, no unescaped column separator."""
    return escape_prose(" ".join(text.split())).replace("|", "\\|")


def code(text: str) -> str:
    """An inline code span for ``text`` (Python-Markdown's tables do not split a row at a
    ``|`` inside backticks, so it is safe in a table cell as it is)."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def anchor(text: str) -> str:
    """An explicit heading id: stable whatever MkDocs's slug rules, so links cannot break."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def heading(level: int, title: str, ident: str) -> str:
    """A Markdown heading with an explicit id (attr_list)."""
    return f"{'#' * min(level, 6)} {title} {{#{ident}}}"


# -- command line ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One command or subcommand of the CLI: its words after ``bandit-router``, its parser
    and the one-line help its parent gives it."""

    words: tuple[str, ...]
    parser: argparse.ArgumentParser
    summary: str


class _FixedWidthFormatter(argparse.HelpFormatter):
    """argparse's formatter at a fixed width (the default follows the terminal)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=USAGE_WIDTH)


def walk_commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = (), summary: str = ""
) -> Iterator[Command]:
    """``parser`` and, depth first, every subcommand below it (aliases listed once)."""
    yield Command(words, parser, summary)
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            yield from walk_commands(sub, (*words, name), helps.get(name, ""))


def expand_help(action: argparse.Action, prog: str) -> str:
    """The help text as ``--help`` prints it (``%(default)s`` and the like filled in)."""
    text = action.help or ""
    if "%" not in text:
        return text
    params: dict[str, Any] = dict(vars(action), prog=prog)
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return text % params


def option_row(action: argparse.Action, prog: str) -> str:
    """One table row for an argument: its spelling, value, default and help."""
    if action.option_strings:
        name = ", ".join(code(s) for s in action.option_strings)
    else:
        name = code(str(action.metavar or action.dest))
    value = ""
    if action.choices is not None:
        value = " \\| ".join(code(str(c)) for c in action.choices)
    elif action.option_strings and action.nargs != 0:
        value = code(str(action.metavar or action.dest.upper()))
    default = ""
    if (
        action.option_strings
        and action.nargs != 0
        and action.default not in (None, argparse.SUPPRESS, "")
    ):
        default = code(str(action.default))
    if action.nargs in ("*", "?") and not action.option_strings:
        required = "no"
    else:
        required = "yes" if action.required or not action.option_strings else ""
    if isinstance(action, argparse._AppendAction):
        value = f"{value} (repeatable)"
    return (
        f"| {name} | {value} | {default} | {required} | {table_cell(expand_help(action, prog))} |"
    )


def command_section(command: Command) -> list[str]:
    """The Markdown of one command: heading, usage, description and its arguments."""
    parser = command.parser
    parser.formatter_class = _FixedWidthFormatter
    title = " ".join(("bandit-router", *command.words))
    lines = [heading(2 if len(command.words) < 2 else 3, title, anchor(title)), ""]
    if command.summary:
        lines += [escape_prose(command.summary[0].upper() + command.summary[1:]) + ".", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    if parser.description and command.words:
        lines += [escape_prose(" ".join(parser.description.split())), ""]
    arguments = [
        a
        for a in parser._actions
        if a.help != argparse.SUPPRESS
        and not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]
    if arguments:
        lines += [
            "| argument | value | default | required | help |",
            "|---|---|---|---|---|",
            *(option_row(a, parser.prog) for a in arguments),
            "",
        ]
    if parser.epilog:  # the examples `--help` ends with
        lines += ["```text", parser.epilog.strip(), "```", ""]
    return lines + subcommand_table(command)


def subcommand_table(command: Command) -> list[str]:
    """A table of the commands one level below ``command``, linked to their sections."""
    below = [
        c
        for c in walk_commands(command.parser, command.words)
        if len(c.words) == len(command.words) + 1
    ]
    if not below:
        return []
    lines = ["| command | what it does |", "|---|---|"]
    for sub in below:
        title = " ".join(("bandit-router", *sub.words))
        lines.append(f"| [{code(title)}](#{anchor(title)}) | {table_cell(sub.summary)} |")
    return [*lines, ""]


def cli_page(parser: argparse.ArgumentParser) -> str:
    """The command line reference: every command and subcommand of ``parser``."""
    lines = [
        "# Command line reference",
        "",
        "Generated from the argparse parser (`bandit_router.cli.build_parser()`) when the site "
        "is built; `bandit-router COMMAND --help` prints the same. An option that can also be "
        "set from the environment names its variable in brackets, e.g. `[BANDIT_ROUTER_LISTEN]`; "
        "the [Operating](../operating.md#serve-flags) page explains the flags of `serve`.",
        "",
    ]
    if parser.description:
        lines += [escape_prose(" ".join(parser.description.split())), ""]
    for command in walk_commands(parser):
        if not command.words:
            parser.formatter_class = _FixedWidthFormatter
            lines += ["```text", parser.format_usage().strip(), "```", ""]
            if parser.epilog:
                lines += ["```text", parser.epilog.strip(), "```", ""]
            lines += subcommand_table(command)
            continue
        lines += command_section(command)
    return "\n".join(lines)


# -- protos ----------------------------------------------------------------------------------

SCALAR_TYPES: Mapping[int, str] = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64: "fixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32: "fixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32: "sfixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64: "sfixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
}

#: Where the well-known types are documented.
WELL_KNOWN = "https://protobuf.dev/reference/protobuf/google.protobuf/#"

# Field numbers of descriptor.proto, the steps of a SourceCodeInfo location path.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2


def compile_protos(proto_root: Path) -> descriptor_pb2.FileDescriptorSet:
    """Every ``.proto`` under ``proto_root`` compiled by grpc_tools' protoc, comments kept."""
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "protos.pb"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{proto_root}",
                f"-I{well_known}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *protos,
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {proto_root} (status {status})")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def comments_by_path(
    proto: descriptor_pb2.FileDescriptorProto,
) -> dict[tuple[int, ...], str]:
    """The comment (leading, then trailing) of every element, keyed by its location path."""
    found: dict[tuple[int, ...], str] = {}
    for location in proto.source_code_info.location:
        text = " ".join(
            part.strip() for part in (location.leading_comments, location.trailing_comments)
        ).strip()
        if text:
            found[tuple(location.path)] = "\n".join(line.strip() for line in text.splitlines())
    return found


def type_link(type_name: str) -> str:
    """A field's message or enum type, linked to its section (or protobuf's own docs)."""
    name = type_name.lstrip(".")
    if name.startswith("google.protobuf."):
        short = name.removeprefix("google.protobuf.")
        return f"[{code(name)}]({WELL_KNOWN}{short.lower()})"
    return f"[{code(name.rsplit('.', 1)[-1])}](#{anchor(name)})"


def field_type(
    field: descriptor_pb2.FieldDescriptorProto,
    map_entries: Mapping[str, descriptor_pb2.DescriptorProto],
) -> str:
    """The field's type as written in the .proto: ``repeated``, ``map<K, V>``, ``optional``."""
    if field.type_name.lstrip(".") in map_entries:
        key, value = map_entries[field.type_name.lstrip(".")].field
        return f"map&lt;{field_type(key, map_entries)}, {field_type(value, map_entries)}&gt;"
    base = type_link(field.type_name) if field.type_name else code(SCALAR_TYPES[field.type])
    if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {base}"
    if field.proto3_optional:
        return f"optional {base}"
    return base


def collect_map_entries(
    files: Sequence[descriptor_pb2.FileDescriptorProto],
) -> dict[str, descriptor_pb2.DescriptorProto]:
    """The synthetic ``XxxEntry`` messages protoc makes for ``map<>`` fields, by full name."""
    entries: dict[str, descriptor_pb2.DescriptorProto] = {}

    def visit(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        for nested in message.nested_type:
            name = f"{prefix}.{message.name}.{nested.name}"
            if nested.options.map_entry:
                entries[name] = nested
            visit(f"{prefix}.{message.name}", nested)

    for proto in files:
        for message in proto.message_type:
            visit(proto.package, message)
    return entries


def enum_section(
    enum: descriptor_pb2.EnumDescriptorProto,
    full_name: str,
    path: tuple[int, ...],
    comments: Mapping[tuple[int, ...], str],
) -> list[str]:
    """An enum: its comment and a table of its values."""
    lines = [heading(3, f"enum {full_name.rsplit('.', 1)[-1]}", anchor(full_name)), ""]
    if path in comments:
        lines += [escape_prose(comments[path]), ""]
    lines += ["| value | number | description |", "|---|---|---|"]
    for i, value in enumerate(enum.value):
        text = table_cell(comments.get((*path, ENUM_VALUE, i), ""))
        lines.append(f"| {code(value.name)} | {value.number} | {text} |")
    return [*lines, ""]


def message_sections(
    message: descriptor_pb2.DescriptorProto,
    full_name: str,
    path: tuple[int, ...],
    comments: Mapping[tuple[int, ...], str],
    map_entries: Mapping[str, descriptor_pb2.DescriptorProto],
) -> list[str]:
    """A message: its comment, a table of its fields, then its nested messages and enums."""
    title = full_name.split(".", 2)[-1] if full_name.count(".") >= 2 else full_name
    lines = [heading(3, f"message {title}", anchor(full_name)), ""]
    if path in comments:
        lines += [escape_prose(comments[path]), ""]
    if message.field:
        lines += ["| field | type | number | description |", "|---|---|---|---|"]
        for i, field in enumerate(message.field):
            text = comments.get((*path, MESSAGE_FIELD, i), "")
            if field.HasField("oneof_index") and not field.proto3_optional:
                text = f"(oneof {message.oneof_decl[field.oneof_index].name}) {text}"
            row = f"| {code(field.name)} | {field_type(field, map_entries)} | {field.number} |"
            lines.append(f"{row} {table_cell(text)} |")
        lines.append("")
    else:
        lines += ["No fields.", ""]
    for i, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            nested_path = (*path, MESSAGE_NESTED, i)
            lines += message_sections(
                nested, f"{full_name}.{nested.name}", nested_path, comments, map_entries
            )
    for i, enum in enumerate(message.enum_type):
        lines += enum_section(enum, f"{full_name}.{enum.name}", (*path, MESSAGE_ENUM, i), comments)
    return lines


def service_section(
    service: descriptor_pb2.ServiceDescriptorProto,
    package: str,
    path: tuple[int, ...],
    comments: Mapping[tuple[int, ...], str],
) -> list[str]:
    """A service: its comment and every RPC with its request, response and comment."""
    full_name = f"{package}.{service.name}"
    lines = [heading(3, f"service {service.name}", anchor(full_name)), ""]
    if path in comments:
        lines += [escape_prose(comments[path]), ""]
    for i, method in enumerate(service.method):
        request = type_link(method.input_type)
        response = type_link(method.output_type)
        if method.client_streaming:
            request = f"stream {request}"
        if method.server_streaming:
            response = f"stream {response}"
        method_name = f"{full_name}.{method.name}"
        lines += [
            heading(4, f"{service.name}.{method.name}", anchor(method_name)),
            "",
            f"`rpc {method.name}` ({request}) returns ({response})",
            "",
        ]
        if (*path, SERVICE_METHOD, i) in comments:
            lines += [escape_prose(comments[(*path, SERVICE_METHOD, i)]), ""]
    return lines


def proto_page(files: descriptor_pb2.FileDescriptorSet) -> str:
    """The proto reference: per file, its services, messages and enums with their comments."""
    protos = sorted(files.file, key=lambda f: f.name)
    map_entries = collect_map_entries(protos)
    lines = [
        "# Proto reference",
        "",
        "Generated from `proto/bandit_router/v1/*.proto` when the site is built (protoc with "
        "`--include_source_info`, so every comment is the one in the file). Clients in any "
        "language are generated from these files; see [Clients](../clients.md).",
        "",
    ]
    for proto in protos:
        comments = comments_by_path(proto)
        lines += [
            heading(2, proto.name, anchor(proto.name)),
            "",
            f"Package `{proto.package}`.",
            "",
        ]
        for i, service in enumerate(proto.service):
            lines += service_section(service, proto.package, (FILE_SERVICE, i), comments)
        for i, message in enumerate(proto.message_type):
            lines += message_sections(
                message,
                f"{proto.package}.{message.name}",
                (FILE_MESSAGE, i),
                comments,
                map_entries,
            )
        for i, enum in enumerate(proto.enum_type):
            lines += enum_section(enum, f"{proto.package}.{enum.name}", (FILE_ENUM, i), comments)
    return "\n".join(lines)


# -- experiment-file schema ------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaRow:
    """One key of an experiment file: where it sits, what it accepts, and what it means."""

    path: str
    accepts: str
    required: bool
    description: str


def resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with a local ``$ref`` (``#/$defs/...``) followed, its own keys kept on top."""
    seen: set[str] = set()
    while "$ref" in node:
        ref = str(node["$ref"])
        if not ref.startswith("#/") or ref in seen:
            raise ValueError(f"unsupported or circular $ref {ref!r}")
        seen.add(ref)
        target: Any = root
        for step in ref[2:].split("/"):
            target = target[step]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def accepts(node: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    """What a schema node accepts, in words: type, allowed values, bounds, pattern."""
    node = resolve(node, root)
    if "oneOf" in node:
        return " or ".join(accepts(choice, root) for choice in node["oneOf"])
    if "enum" in node:
        return "one of " + ", ".join(code(json.dumps(v)) for v in node["enum"])
    kind = str(node.get("type", "any"))
    if kind == "array":
        kind = f"list of ({accepts(node.get('items', {}), root)})"
    bounds = []
    for key, symbol in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if key in node:
            bounds.append(f"{symbol} {node[key]}")
    for key, words in (
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
        ("maxLength", "at most {} characters"),
    ):
        if key in node:
            bounds.append(words.format(node[key]))
    if "pattern" in node:
        bounds.append(f"matching {code(node['pattern'])}")
    if isinstance(node.get("additionalProperties"), Mapping):
        bounds.append(f"values: {accepts(node['additionalProperties'], root)}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def schema_rows(
    node: Mapping[str, Any], root: Mapping[str, Any], path: str = "", required: bool = True
) -> Iterator[SchemaRow]:
    """Every key a file may hold, depth first in the schema's order, with its full path
    (``experiments[].arms[].prior_n``)."""
    node = resolve(node, root)
    if path:
        yield SchemaRow(path, accepts(node, root), required, str(node.get("description", "")))
    if node.get("type") == "array" and "items" in node:
        yield from _members(resolve(node["items"], root), root, f"{path}[]")
    else:
        yield from _members(node, root, path)


def _members(node: Mapping[str, Any], root: Mapping[str, Any], path: str) -> Iterator[SchemaRow]:
    """The rows of an object's keys, or of the keys of each mapping among its ``oneOf``
    choices (an arm is a bare name or a mapping with ``name``, ``state``, ...)."""
    for choice in [node, *(resolve(c, root) for c in node.get("oneOf", []))]:
        required = set(choice.get("required", []))
        for name, child in choice.get("properties", {}).items():
            child_path = f"{path}.{name}" if path else name
            yield from schema_rows(child, root, child_path, name in required)


def schema_page(schema: Mapping[str, Any]) -> str:
    """The experiment-file reference: every key, what it accepts and whether it is required."""
    lines = [
        "# Experiment file reference",
        "",
        "Generated when the site is built from the JSON Schema the package ships, "
        "`bandit_router/schema/experiments.schema.json` (`bandit-router schema` prints it; its "
        f"`$id` is `{schema.get('$id', '')}`). Editors read it through "
        "`# yaml-language-server: $schema=...`; the server validates every value again and "
        "names the field of any error. Examples and meanings are on the "
        "[Concepts](../concepts.md#experiments) page.",
        "",
    ]
    if "description" in schema:
        lines += [escape_prose(str(schema["description"])), ""]
    lines += [
        "Any key not listed here is refused, at any depth. An arm or a policy may be written as "
        "a bare name or as a mapping; the rows for the mapping's keys follow its row.",
        "",
        "| key | accepts | required | description |",
        "|---|---|---|---|",
    ]
    for row in schema_rows(schema, schema):
        required = "yes" if row.required else ""
        lines.append(
            f"| {code(row.path)} | {row.accepts} | {required} | {table_cell(row.description)} |"
        )
    return "\n".join([*lines, ""])


# -- the hook --------------------------------------------------------------------------------


def reference_pages(repo: Path) -> dict[str, str]:
    """Every generated page, by its path under docs/."""
    from bandit_router.cli import build_parser

    schema_text = (
        resources.files("bandit_router").joinpath("schema/experiments.schema.json").read_text()
    )
    return {
        CLI_PAGE: cli_page(build_parser()),
        PROTO_PAGE: proto_page(compile_protos(repo / "proto")),
        SCHEMA_PAGE: schema_page(json.loads(schema_text)),
    }


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """MkDocs event: add the generated pages; a committed copy of one is an error, since it
    would silently stand in for the generated page."""
    repo = Path(config.config_file_path).resolve().parent
    for path, text in reference_pages(repo).items():
        if files.get_file_from_path(path) is not None:
            raise RuntimeError(f"docs/{path} is generated at build time; delete the committed file")
        files.append(File.generated(config, path, content=text))
    return files
