"""A sweep's records as a paper-style Markdown table, a CSV, and the parsing that reads the Markdown back.

Cells aggregate over seeds: the mean, and with several seeds "mean ± std" (sample std, ddof = 1). The Markdown
shows each metric with METRICS' decimals; the CSV keeps full precision.
"""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path
from typing import Any

from genlab.outputs import first_line_of
from genlab.tables.spec import METRICS, TableSpec

MISSING = "-"


def aggregate(spec: TableSpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (row, column) in spec order: settings, seeds, mean/std of every metric and its value per seed."""
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["row"], r["column"]), []).append(r)
    out = []
    for (row, column), members in groups.items():
        entry: dict[str, Any] = {"row": row, "column": column, "settings": members[0]["settings"],
                                 "seeds": [m["seed"] for m in members], "n": members[0]["n"],
                                 "nfe": members[0].get("nfe"),
                                 "keys": [m["key"] for m in members], "metrics": {}, "values": {}}
        for metric in METRICS:
            values = [m["metrics"][metric] for m in members if metric in m["metrics"]]
            if values:
                std = statistics.stdev(values) if len(values) > 1 else None
                entry["metrics"][metric] = (statistics.fmean(values), std)
                entry["values"][metric] = values
        out.append(entry)
    return out


def format_value(metric: str, mean: float, std: float | None) -> str:
    decimals = METRICS[metric][1]
    if mean != mean:  # NaN
        return "nan"
    if metric == "nfe" and std == 0:  # a count that every seed spends alike: "20", not "20 ± 0"
        std = None
    return f"{mean:.{decimals}f}" + (f" ± {std:.{decimals}f}" if std is not None else "")


def _cell_text(entry: dict[str, Any] | None, metric: str) -> str:
    if entry is None or metric not in entry["metrics"]:
        return MISSING
    return format_value(metric, *entry["metrics"][metric])


def markdown_table(spec: TableSpec, entries: list[dict[str, Any]]) -> str:
    """The table as the paper lays it out: rows x column values (cells: the first metric), or rows x metrics."""
    by_cell = {(e["row"], e["column"]): e for e in entries}
    if spec.columns is not None:
        metric = spec.metrics[0]
        heads = [spec.columns.title(v) for v in spec.columns.values]
        lines = [f"| {METRICS[metric][0]} | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for row in spec.rows:
            cells = [_cell_text(by_cell.get((row.label, h)), metric) for h in heads]
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    else:
        heads = [METRICS[m][0] for m in spec.metrics]
        lines = ["| | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
        for row in spec.rows:
            cells = [_cell_text(by_cell.get((row.label, None)), m) for m in spec.metrics]
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table(spec: TableSpec) -> str:
    """The paper's own numbers under ours, with their source; '' when the spec has none."""
    paper = spec.paper
    if not paper:
        return ""
    heads = [str(h) for h in paper.get("columns", [])]
    lines = [f"**Paper:** {paper['source']}", ""]
    if paper.get("note"):
        lines += [str(paper["note"]), ""]
    lines += [f"| {paper.get('corner', '')} | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for label, values in paper.get("rows", {}).items():
        lines.append(f"| {label} | " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines)


NFE_BUDGET = "nfe_budget"
COMMAND_LINE = "- Command: `genlab table "  # how the provenance footer of every table's Markdown names its command
CSV_HEADER = "table,row,column,"


def table_file_mark(path: Path) -> str | None:
    """"genlab table" when `path` is a Markdown or CSV table that genlab table wrote, else None: the Markdown names
    its command in the provenance footer, the CSV starts with the header of csv_rows."""
    if path.suffix == ".csv":
        line = first_line_of(path)
        return "genlab table" if line is not None and line.startswith(CSV_HEADER) else None
    try:
        return "genlab table" if COMMAND_LINE in path.read_text(encoding="utf-8") else None
    except (OSError, UnicodeDecodeError):
        return None


def csv_rows(spec: TableSpec, entries: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: one line per (row, column), full precision, empty where a metric does not apply.

    Each metric has its mean, its std over seeds and its values, one per seed in the order of `seeds`."""
    setting_keys = sorted({k for e in entries for k in e["settings"]})
    # A sweep of NFE budgets (nfe: 10) names its setting nfe_budget: "nfe" is the network evaluations each cell used.
    header = [*CSV_HEADER.strip(",").split(","), *[NFE_BUDGET if k == "nfe" else k for k in setting_keys], "nfe", "seeds", "n"]
    for metric in METRICS:
        header += [f"{metric}_mean", f"{metric}_std", f"{metric}_values"]
    header.append("cells")
    rows = []
    for e in entries:
        line = [spec.name, e["row"], e["column"] or "", *[e["settings"].get(k, "") for k in setting_keys],
                "" if e.get("nfe") is None else e["nfe"], " ".join(map(str, e["seeds"])), e["n"]]
        for metric in METRICS:
            mean, std = e["metrics"].get(metric, ("", ""))
            line += [mean, "" if std is None else std, " ".join(map(repr, e["values"].get(metric, [])))]
        line.append(" ".join(e["keys"]))
        rows.append(line)
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


_NUMBER = re.compile(r"^(-?[\d.]+|nan)(?: ± ([\d.]+))?$")


def parse_markdown_table(text: str) -> dict[tuple[str, str], tuple[float, float | None]]:
    """The first pipe table in `text` as {(row label, column head): (mean, std or None)}; '-' cells are left out."""
    lines = [ln.strip() for ln in text.splitlines()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    table = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        table.append([c.strip() for c in ln.strip("|").split("|")])
    heads, body = table[0], table[2:]
    out = {}
    for cells in body:
        for head, text_value in zip(heads[1:], cells[1:]):
            match = _NUMBER.match(text_value)
            if match:
                std = float(match.group(2)) if match.group(2) else None
                out[(cells[0], head)] = (float(match.group(1)), std)
    return out
