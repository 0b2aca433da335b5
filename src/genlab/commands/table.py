"""`genlab table SPEC [ckpt=PATH] ...`: run a sweep spec and write <out>/<name>.md, .csv, .png (and a wandb.Table)."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import wandb

from genlab.commands.args import TableArgs, parse_command_args
from genlab.errors import GenlabError
from genlab.metrics.protocol import resize_record
from genlab.outputs import check_file_out, free_name
from genlab.runs.folder import default_output
from genlab.runs.provenance import describe_machine
from genlab.tables.cells import CellStore
from genlab.tables.plot import plot_table
from genlab.tables.render import (
    aggregate,
    csv_rows,
    markdown_table,
    paper_table,
    table_file_mark,
    write_csv,
)
from genlab.tables.runner import SweepContext, run_cells
from genlab.tables.spec import METRICS, TableSpec, check_settings, load_spec
from genlab.training.loggers import wandb_must_go_offline


def parse_table_args(args: list[str]) -> tuple[str, TableArgs]:
    """The spec (first argument) and the typed key=value arguments after it."""
    if not args or "=" in args[0]:
        raise GenlabError("table needs a sweep spec first: genlab table experiments/tables/NAME.yaml ckpt=PATH ...")
    a = parse_command_args(TableArgs, args[1:], "table", {})
    if a.n is not None and a.n < 10:
        raise GenlabError(f"n={a.n}: evaluate at least 10 samples per cell.")
    if a.batch_size is not None and a.batch_size <= 0:
        raise GenlabError(f"batch_size={a.batch_size} must be a positive integer.")
    if a.seeds is not None and not a.seeds:
        raise GenlabError("seeds=[] is empty: give at least one sample seed, e.g. seeds=[0,1,2].")
    return args[0], a


def provenance(spec: TableSpec, ctx: SweepContext, records: list[dict[str, Any]], command: str,
               seconds: float) -> list[str]:
    """The footer: what was evaluated, with what, where, and how long it took."""
    machine = describe_machine(ctx.device)
    checkpoints = ", ".join(f"`{p}` ({ctx.weights.get(name, '?')} weights)" for name, p in ctx.paths.items())
    cell_seconds = sum(r["seconds"]["total"] for r in records)
    ex = ctx.extractor
    resize = resize_record(ex, int(ctx.cfg.data.resolution))
    lines = [
        f"- Command: `{command}`",  # render.COMMAND_LINE: how a later table knows the file as genlab's
        f"- Checkpoint(s): {checkpoints}",
        f"- Each cell: {ctx.n} samples per seed, seeds {ctx.spec.seeds}; "
        + ("mean ± sample std over seeds." if len(ctx.spec.seeds) > 1 else "one seed."),
        f"- Features: `{ex.features}` ({ex.name}{', ' + ex.model if ex.model else ''}, weights `{ex.weights_path}`, "
        f"sha256 {ex.weights_id}); reference: {ctx.n_real} images of the {ctx.args.split} split of "
        f"{ctx.cfg.data.name}, cache key `{ctx.reference_key}`.",
        f"- Protocol: {ex.protocol}; images reach the features by: {resize['filter']} to {resize['size']} px"
        + (f" (`{resize['implementation']}`)." if resize["implementation"] else "."),
        f"- Metrics: {', '.join(f'{m} = {METRICS[m][0]}' for m in spec.metrics)}; KID is x1e3."
        + (f" Accuracy: the share of samples that the classifier `{ctx.scorer_path}` (at t = 0) assigns to the class "
           "they were steered to." if "class_acc" in spec.metrics else ""),
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch threads, device "
        f"{machine['device']}{', GPU ' + machine['gpu'] if 'gpu' in machine else ''}; torch {machine['torch']}, "
        f"torch-fidelity {machine['torch_fidelity']}, genlab {machine['genlab_commit']}.",
        f"- Time: {cell_seconds:.0f} s over all cells (sampling and metrics); this invocation took {seconds:.0f} s. "
        f"Written {time.strftime('%Y-%m-%d %H:%M %Z')}.",
    ]
    return lines


def compose_markdown(spec: TableSpec, entries: list[dict[str, Any]], footer: list[str]) -> str:
    parts = [f"## {spec.title}", ""]
    if spec.description:
        parts += [spec.description.strip(), ""]
    parts += [markdown_table(spec, entries), ""]
    paper = paper_table(spec)
    if paper:
        parts += [paper, ""]
    parts += ["Provenance:", "", *footer, ""]
    return "\n".join(parts)


def wanted_wandb(a: TableArgs, ctx: SweepContext) -> bool:
    if a.wandb is not None:
        return a.wandb
    return any(m.cfg.logger.name == "wandb" for m in ctx.modules.values())


def log_wandb(spec: TableSpec, ctx: SweepContext, header: list[str], rows: list[list[Any]], plot: Path,
              markdown: str) -> str:
    """A W&B run of job type `table` holding the wandb.Table, the plot and the Markdown; returns the run's folder."""
    log = ctx.cfg.logger
    mode = "offline" if wandb_must_go_offline() else None
    run = wandb.init(project=log.project, entity=log.entity, group=log.group, job_type="table",
                     name=f"table-{spec.name}", dir=str(Path(ctx.args.out)), mode=mode,
                     config={"spec": spec.name, "n": ctx.n, "seeds": spec.seeds, "features": ctx.extractor.features,
                             "checkpoints": ctx.paths})
    table = wandb.Table(columns=header, data=[[(None if v == "" else v) for v in r] for r in rows])  # empty: None
    run.log({f"tables/{spec.name}": table, f"tables/{spec.name}_plot": wandb.Image(str(plot)),
             f"tables/{spec.name}_markdown": wandb.Html(f"<pre>{markdown}</pre>")})
    folder = run.dir
    run.finish()
    return folder


def table_command(args: list[str]) -> dict[str, Any]:
    """Run `genlab table`; return the paths written and the aggregated entries."""
    spec_arg, a = parse_table_args(args)
    spec = load_spec(spec_arg)
    if a.seeds is not None:
        spec.seeds = list(a.seeds)
    if a.values is not None:
        if spec.columns is None:
            raise GenlabError(f"values= replaces column values, but the spec {spec.name} has no columns.")
        spec.columns = replace(spec.columns, values=list(a.values))
        for value in spec.columns.values:
            check_settings({spec.columns.key: value}, "values")
    started = time.time()
    if a.out is None:  # the tables of a checkpoint stay with its run
        first = a.ckpt or next(iter(a.ckpts.values()), None)
        a.out = default_output(first, "tables", "", "tables") if first else "tables"
    out = Path(a.out)
    paths = {"md": out / f"{spec.name}.md", "csv": out / f"{spec.name}.csv", "png": out / f"{spec.name}.png"}
    if out.exists() and not out.is_dir():
        raise GenlabError(f"out={out} is a file; give the folder for the table's files.")
    for path in paths.values():  # before any cell runs, not after
        check_file_out(path, f"Choose another out= folder, e.g. out={free_name(out)}.",
                       mark=table_file_mark if path.suffix != ".png" else None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenlabError(f"cannot create out={out} ({exc.strerror}); choose another folder.") from None
    ctx = SweepContext(spec, a)
    store = CellStore(out / "cells" / spec.name)
    records = run_cells(ctx, store)
    entries = aggregate(spec, records)
    command = "genlab table " + " ".join(shlex.quote(x) for x in args)
    markdown = compose_markdown(spec, entries, provenance(spec, ctx, records, command, time.time() - started))
    paths["md"].write_text(markdown)
    header, rows = csv_rows(spec, entries)
    write_csv(paths["csv"], header, rows)
    plot_table(spec, entries, paths["png"])
    result: dict[str, Any] = {"paths": {k: str(v) for k, v in paths.items()}, "entries": entries}
    if wanted_wandb(a, ctx):
        result["wandb_dir"] = log_wandb(spec, ctx, header, rows, paths["png"], markdown)
    print(markdown_table(spec, entries))
    print(f"genlab table: wrote {paths['md']}, {paths['csv']} and {paths['png']}", file=sys.stderr)
    return result
