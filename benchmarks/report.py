"""The results file: machine and versions, one Markdown section per measurement, and the targets."""

from __future__ import annotations

import datetime
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from genlab.runs.provenance import cpu_model, git_commit


@dataclass
class Target:
    """A goal of issue 9: `value` must reach `goal` (at most `goal` when lower_is_better)."""

    name: str
    value: float
    goal: float
    why_missed: str = ""  # what limits the number when it falls short
    lower_is_better: bool = False

    @property
    def passed(self) -> bool:
        return self.value <= self.goal if self.lower_is_better else self.value >= self.goal

    def line(self) -> str:
        goal = f"{'<=' if self.lower_is_better else '>='} {self.goal:g}"
        if self.passed:
            return f"| {self.name} | {self.value:.3g} | {goal} | PASS | |"
        gap = abs(self.value - self.goal)
        factor = f" ({self.value / self.goal:.2f}x the goal)" if self.goal else ""
        return f"| {self.name} | {self.value:.3g} | {goal} | MISS by {gap:.3g}{factor} | {self.why_missed} |"


@dataclass
class Section:
    """One measurement: a title, Markdown lines, and the targets it checks."""

    title: str
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        self.lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self.lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
        self.lines.append("")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_lines(device: torch.device) -> list[str]:
    """Who measured: host, CPU, cores, threads, GPU, library versions, the genlab commit."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    versions = ", ".join(f"{p} {_version(p)}" for p in ("torch", "lightning", "diffusers", "torch-fidelity"))
    return [
        f"- host: {platform.node()}",
        f"- CPU: {cpu_model()}, {torch.get_num_threads()} torch threads of {_cpu_count()} cores",
        f"- GPU: {gpu}; benchmark device: {device}",
        f"- python {platform.python_version()}, {versions}",
        f"- genlab commit: {git_commit()}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
    ]


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def write_report(path: Path, title: str, header: list[str], sections: list[Section]) -> None:
    """The Markdown file: header, the target summary first, then every section."""
    targets = [t for s in sections for t in s.targets]
    lines = [f"# {title}", "", *header, "", "## Targets (issue 9)", "",
             "| target | measured | goal | result | why it falls short |", "|---|---|---|---|---|",
             *[t.line() for t in targets], ""]
    for section in sections:
        lines += [f"## {section.title}", "", *section.lines, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
