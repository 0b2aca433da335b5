"""MkDocs hook: the config and command reference pages, generated from the code that `--help` reads.

A page holds a marker; the hook replaces it with a table of every key (type, default, the comment written
beside the field in the schema), so the site and `genlab COMMAND --help` can never disagree.
"""

import re

from genlab.commands import args as command_args
from genlab.commands.help import COMMAND_HELP, describe_fields
from genlab.config.schema import Config

MARKER = re.compile(r"<!-- genlab:(config-keys|command-args) -->")


def cell(text: str) -> str:
    # a table cell of Markdown: `|` would end the cell, and `<experiment>` would be read as an HTML tag
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;") if text else ""


def key_table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{key}` | {cell(kind)} | {cell(default)} | {cell(comment)} |"
              for key, kind, default, comment in rows]
    return "\n".join(lines)


def config_keys() -> str:
    groups: dict[str, list] = {}
    for row in describe_fields(Config):
        groups.setdefault(row[0].split(".")[0] if "." in row[0] else "(top level)", []).append(row)
    return "\n\n".join(f"## `{name}`\n\n{key_table(rows)}" for name, rows in groups.items())


def command_args_tables() -> str:
    parts = []
    for command, (usage, args_name, what) in COMMAND_HELP.items():
        body = (key_table(describe_fields(getattr(command_args, args_name))) if args_name
                else "Takes the run config: every key on [the config schema](config.md).")
        parts.append(f"## `genlab {command}`\n\n`genlab {command} {usage}`: {cell(what)}.\n\n{body}")
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    generate = {"config-keys": config_keys, "command-args": command_args_tables}
    return MARKER.sub(lambda match: generate[match.group(1)](), markdown)
