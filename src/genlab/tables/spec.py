"""Sweep specs of `genlab table`: what to vary, how the table is laid out, what to plot, the paper's numbers.

A spec is a YAML file (experiments/tables/*.yaml):

    name: ddim_steps_eta
    title: FID against DDIM steps S and eta
    defaults: {sampler: ddim}               # settings every cell starts from
    rows:                                   # one table row each: a label and its settings
      - {label: "eta = 0.0", eta: 0.0}
      - {label: "DDPM, sigma^2 = beta", sampler: ddpm, variance: beta}
    columns: {key: steps, values: [10, 20, 50], label: "S = {value}"}   # optional
    metrics: [fid, precision, recall]       # with columns: the first fills the cells, all go to the CSV
    seeds: [0]                              # sample seeds; several give mean +- std
    n: 1000                                 # samples per cell
    plot: {kind: lines, log_x: true}        # lines | sweep | bars
    # sigma_rel (the EMA length, Karras et al. 2024) is a setting too: a run trained with model.ema.posthoc=true
    # has each cell's EMA rebuilt from its snapshots, e.g. columns: {key: sigma_rel, values: [0.02, 0.05, 0.1]}
    paper: {source: ..., columns: [...], rows: {label: [numbers]}}   # printed under ours, optional

A cell is one (row, column value, seed): the defaults, then the row's settings, then the column's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from genlab.config import available, project_root
from genlab.diffusion import SAMPLER_FIELDS, SamplerSettings, resolve_settings
from genlab.errors import GenlabError, first_line
from genlab.ema.power import sigma_rel_to_gamma

# Settings a cell may vary, and the type each must have.
SETTINGS: dict[str, tuple[type, ...]] = {
    "ckpt": (str,),  # a name given as ckpts.NAME=PATH; absent: the ckpt=PATH argument
    "sampler": (str,),  # a sampler of the registry (diffusion); absent: the checkpoint's own
    "steps": (int,),  # sampler steps: network evaluations (heun: 2 steps - 1); DDPM's respaced steps
    "nfe": (int,),  # network evaluations instead of steps: the most steps within that many (heun: odd NFE only)
    "eta": (int, float),
    "spacing": (str,),
    "rho": (int, float),  # the karras grid's rho (Karras et al. 2022, eq. 5)
    "sigma_max": (int, float),  # sigma / alpha where a karras or logsnr grid starts
    "variance": (str,),  # DDPM: beta | beta_tilde
    "clip": (bool,),  # clamp the predicted x0 at every step
    "s_churn": (int, float),  # heun: Karras et al.'s Algorithm 2, with s_tmin, s_tmax, s_noise
    "s_tmin": (int, float),
    "s_tmax": (int, float),
    "s_noise": (int, float),
    "guidance": (int, float),  # CFG weight w
    "guidance_sigma_min": (int, float),  # the guidance interval in sigma / alpha (Kynkaanniemi et al. 2024)
    "guidance_sigma_max": (int, float),
    "guide": (str,),  # autoguidance's guide: a checkpoint path, or time-step:5min of the row's checkpoint's run
    "guide_scale": (int, float),  # its w (Karras et al. 2024, eq. 1); 1 is the main model alone
    "classifier_scale": (int, float),  # classifier guidance s (needs classifier=PATH)
    "sigma_rel": (int, float),  # the EMA length, rebuilt after training from the run's post-hoc EMA snapshots
}
SAMPLER_SETTINGS = (*SAMPLER_FIELDS, "nfe")  # the sampler's fields, and an NFE budget instead of steps

# Metric names in specs, how a table heads them, and the decimals shown (the CSV keeps full precision).
METRICS: dict[str, tuple[str, int]] = {
    "fid": ("FID", 2),
    "kid": ("KID x1e3", 2),
    "is": ("IS", 2),
    "precision": ("Precision", 3),
    "recall": ("Recall", 3),
    "density": ("Density", 3),  # Naeem et al. 2020 (k = 5)
    "coverage": ("Coverage", 3),
    "cmmd": ("CMMD", 3),  # Jayasumana et al. 2024: features=clip only
    "class_acc": ("Accuracy", 3),
    "nfe": ("NFE", 0),  # network evaluations per sample that sampling counted (CFG's null pass, a guide's forwards)
}
PLOT_KINDS = ("lines", "sweep", "bars", "tradeoffs")
SPEC_KEYS = {"name", "title", "description", "defaults", "rows", "columns", "metrics", "seeds", "n", "batch_size",
             "plot", "paper"}


@dataclass(frozen=True)
class Row:
    label: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class Columns:
    key: str
    values: list[Any]
    label: str = "{key} = {value}"

    def title(self, value: Any) -> str:
        return self.label.format(key=self.key, value=value)


@dataclass(frozen=True)
class Cell:
    row: str
    column: str | None  # the column's title; None when the metrics are the columns
    seed: int
    settings: dict[str, Any]


@dataclass
class TableSpec:
    name: str
    title: str
    rows: list[Row]
    metrics: list[str]
    columns: Columns | None = None
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    n: int = 1000
    batch_size: int = 250
    plot: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] | None = None

    def cells(self) -> list[Cell]:
        """Every (row, column, seed) with its full settings, rows first, then columns, then seeds."""
        out = []
        for row in self.rows:
            columns = [(None, {})] if self.columns is None else [
                (self.columns.title(v), {self.columns.key: v}) for v in self.columns.values]
            for title, setting in columns:
                for seed in self.seeds:
                    out.append(Cell(row.label, title, seed, {**self.defaults, **row.settings, **setting}))
        return out


def check_settings(settings: dict[str, Any], where: str) -> None:
    for key, value in settings.items():
        if key not in SETTINGS:
            raise GenlabError(f"{where}: unknown setting {key!r}. Settings a cell can vary: {', '.join(SETTINGS)}.")
        # bool is an int to isinstance: a bool passes only a setting that is one (clip), never steps or a scale
        if (isinstance(value, bool) and bool not in SETTINGS[key]) or not isinstance(value, SETTINGS[key]):
            kinds = " or ".join(t.__name__ for t in SETTINGS[key])
            raise GenlabError(f"{where}: {key}={value!r} must be {kinds}.")
    if settings.get("nfe") is not None and settings["nfe"] < 1:  # with_nfe would round it up to one step
        raise GenlabError(f"{where}: nfe={settings['nfe']} is out of range: it must be a positive number of network "
                          "evaluations.")
    if "sigma_rel" in settings:
        try:
            sigma_rel_to_gamma(float(settings["sigma_rel"]))
        except ValueError as exc:
            raise GenlabError(f"{where}: {exc}.") from None
    # What needs no model (eta >= 0, finite guidance, valid choices) fails at load; steps <= T is checked per cell.
    # A guide_scale whose guide another part of the cell gives (a column of scales, a row's guide) is checked on the
    # whole cell (parse_spec), not here.
    alone = {k: v for k, v in settings.items() if k != "guide_scale" or "guide" in settings}
    cell_settings(alone, prefix=f"{where}: ")


def cell_settings(settings: dict[str, Any], base: SamplerSettings | None = None, num_timesteps: int | None = None,
                  prefix: str = "", discrete: bool = True) -> SamplerSettings:
    """The SamplerSettings of a cell, checked against T (None: what needs no model): `base` (the checkpoint's sampler
    block; before a checkpoint loads, the default SamplerSettings) with the cell's sampler settings, as every command
    resolves them (resolve_settings)."""
    given = {k: settings.get(k) for k in SAMPLER_FIELDS}
    nfe = settings.get("nfe")
    if nfe is not None and given["steps"] is not None:
        raise GenlabError(f"{prefix}a cell sets both steps={given['steps']} and nfe={nfe}: give one of them.")
    out = resolve_settings(base or SamplerSettings(), given, num_timesteps, prefix, discrete)
    return out.with_nfe(nfe).check(num_timesteps, prefix, discrete) if nfe is not None else out


def _as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GenlabError(f"{where} must be a mapping of key: value, got {value!r}.")
    return value


def parse_spec(data: dict[str, Any], source: str = "spec") -> TableSpec:
    """A checked TableSpec from the YAML's plain data; every mistake names the key and the file."""
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise GenlabError(f"{source}: unknown key(s) {', '.join(unknown)}. Valid keys: {', '.join(sorted(SPEC_KEYS))}.")
    for key in ("name", "title", "rows", "metrics"):
        if key not in data:
            raise GenlabError(f"{source}: missing {key!r}.")
    defaults = _as_dict(data.get("defaults") or {}, f"{source}: defaults")
    check_settings(defaults, f"{source}: defaults")
    if not isinstance(data["rows"], list) or not data["rows"]:
        raise GenlabError(f"{source}: rows must be a non-empty list of {{label: ..., setting: value}}.")
    rows = []
    for i, raw in enumerate(data["rows"]):
        raw = dict(_as_dict(raw, f"{source}: rows[{i}]"))
        label = raw.pop("label", None)
        if not isinstance(label, str) or not label:
            raise GenlabError(f"{source}: rows[{i}] needs a label.")
        check_settings(raw, f"{source}: rows[{i}] ({label})")
        rows.append(Row(label, raw))
    if len({r.label for r in rows}) != len(rows):
        raise GenlabError(f"{source}: row labels must be distinct.")
    columns = None
    if data.get("columns") is not None:
        raw = _as_dict(data["columns"], f"{source}: columns")
        if set(raw) - {"key", "values", "label"} or "key" not in raw or not raw.get("values"):
            raise GenlabError(f"{source}: columns must be {{key: SETTING, values: [...], label: '... {{value}}'}}.")
        columns = Columns(raw["key"], list(raw["values"]), raw.get("label", "{key} = {value}"))
        for v in columns.values:
            check_settings({columns.key: v}, f"{source}: columns")
    metrics = list(data["metrics"])
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise GenlabError(f"{source}: metrics {bad or metrics} unknown; choose from {', '.join(METRICS)}.")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise GenlabError(f"{source}: seeds must be a non-empty list of integers.")
    plot = _as_dict(data.get("plot") or {}, f"{source}: plot")
    if plot.get("kind", "lines" if columns else "bars") not in PLOT_KINDS:
        raise GenlabError(f"{source}: plot.kind must be one of {', '.join(PLOT_KINDS)}.")
    if plot.get("kind") == "tradeoffs":
        _check_tradeoffs(plot, {r.label for r in rows}, metrics, source)
    spec = TableSpec(name=str(data["name"]), title=str(data["title"]), rows=rows, metrics=metrics, columns=columns,
                     description=str(data.get("description", "")), defaults=defaults, seeds=seeds,
                     n=int(data.get("n", 1000)), batch_size=int(data.get("batch_size", 250)), plot=plot,
                     paper=data.get("paper"))
    if spec.n < 10:
        raise GenlabError(f"{source}: n={spec.n}: evaluate at least 10 samples per cell.")
    for cell in spec.cells():  # what the parts give together (a guide in a row, its scale in a column)
        where = f"{source}: rows ({cell.row})" + (f", columns ({cell.column})" if cell.column else "")
        cell_settings(cell.settings, prefix=f"{where}: ")
    return spec


def find_spec(name_or_path: str) -> Path:
    """A spec file: a path, or the name of a shipped spec in experiments/tables/ (ddim_steps_eta, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = project_root() / "experiments" / "tables"
    if (shipped / f"{name_or_path}.yaml").is_file():
        return shipped / f"{name_or_path}.yaml"
    raise GenlabError(f"sweep spec {name_or_path} does not exist. Give a YAML path or a shipped spec: "
                      f"{', '.join(available(shipped))}.")


def load_spec(name_or_path: str | Path) -> TableSpec:
    """Read and check a sweep spec file (a path or a shipped spec's name)."""
    path = find_spec(str(name_or_path))
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, OSError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise GenlabError(f"cannot read the sweep spec {path}{at}: {problem}. Fix the YAML (an unclosed quote or "
                          "bracket?) or start from a shipped spec in experiments/tables/.") from None
    return parse_spec(_as_dict(data, str(path)), str(path))


def _check_tradeoffs(plot: dict[str, Any], labels: set[str], metrics: list[str], source: str) -> None:
    """plot: {kind: tradeoffs, pairs: [[x, y], ...], lines: {NAME: [row label, ...]}}: one panel per metric pair,
    one line per named group of rows."""
    pairs, lines = plot.get("pairs"), plot.get("lines")
    if not isinstance(pairs, list) or not pairs or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise GenlabError(f"{source}: plot.pairs must list metric pairs, e.g. [[class_acc, fid], [recall, precision]].")
    unknown = sorted({m for p in pairs for m in p} - set(metrics))
    if unknown:
        raise GenlabError(f"{source}: plot.pairs name {', '.join(unknown)}, which the spec's metrics do not have.")
    if not isinstance(lines, dict) or not lines:
        raise GenlabError(f"{source}: plot.lines must map a line's name to its rows' labels.")
    missing = sorted({str(label) for group in lines.values() for label in group} - labels)
    if missing:
        raise GenlabError(f"{source}: plot.lines names rows that do not exist: {', '.join(missing)}.")
