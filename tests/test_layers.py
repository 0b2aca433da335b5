"""The layer rule of the package (docs/architecture.md), checked by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lint_imports(config: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run([exe, "--config", str(config), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_the_import_contracts_hold() -> None:
    result = lint_imports(REPO / "pyproject.toml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "genlab layers KEPT" in result.stdout and "never import Lightning KEPT" in result.stdout


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The same layers with `diffusion` moved above `models` must break: models imports diffusion."""
    text = (REPO / "pyproject.toml").read_text()
    start = text.index("[tool.importlinter]")
    swapped = text[start:].replace('  "genlab.models",\n', '  "genlab.models",\n  "genlab.diffusion",\n', 1).replace(
        '"genlab.diffusion | genlab.nn', '"genlab.nn', 1)
    config = tmp_path / "contracts.toml"
    config.write_text(textwrap.dedent(swapped))
    result = lint_imports(config)
    assert result.returncode != 0 and "genlab layers BROKEN" in result.stdout, result.stdout[-2000:]
