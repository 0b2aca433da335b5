"""The documentation site builds with `mkdocs build --strict`, and its API pages hold every public function.

A broken link, a missing anchor or a reference mkdocstrings cannot resolve fails the strict build; the API check
reads the built pages, so a public name that falls off them (or loses its docstring) fails here.
"""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import genlab.api
import genlab.diffusion

REPO = Path(__file__).resolve().parents[1]


def build_site(site_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    build = build_site(site_dir)
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return site_dir


def page_ids(site: Path, page: str) -> set[str]:
    html = (site / "api" / page / "index.html").read_text(encoding="utf-8")
    return set(re.findall(r'id="([A-Za-z_][\w.]*)"', html))


def public_callables(module, names: list[str]) -> list[tuple[str, object]]:
    return [(name, getattr(module, name)) for name in names
            if inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name))]


def documented_as(module_name: str, name: str, obj: object, ids: set[str]) -> bool:
    # An older alias (ScheduleName = Schedule) is documented under the object's own name; a function whose name
    # is also its submodule's (genlab.diffusion.generate) under its full path.
    candidates = {f"{module_name}.{name}", f"{module_name}.{obj.__name__}", f"{obj.__module__}.{obj.__qualname__}"}
    return bool(candidates & ids)


def test_every_page_in_the_nav_is_built(site: Path) -> None:
    for page in ("getting-started", "training", "samplers", "evaluation", "tables", "guarantees", "architecture"):
        assert (site / page / "index.html").is_file(), page
    # the committed results are published with the pages that link them
    assert (site / "benchmarks" / "results" / "families.png").is_file()


def test_the_python_api_is_on_its_page_with_docstrings(site: Path) -> None:
    ids = page_ids(site, "python")
    for name in ("Model", "evaluate", "load", "train"):
        obj = getattr(genlab.api, name)
        assert inspect.getdoc(obj), f"genlab.api.{name} has no docstring"
        assert f"genlab.api.{name}" in ids, f"genlab.api.{name} is missing from the API page"
    assert set(genlab.__all__) - {"__version__"} == {"Model", "evaluate", "load", "train"}


def test_every_public_function_of_genlab_diffusion_is_on_its_page_with_a_docstring(site: Path) -> None:
    ids = page_ids(site, "diffusion")
    missing_doc, missing_page = [], []
    for name, obj in public_callables(genlab.diffusion, genlab.diffusion.__all__):
        if not (obj.__doc__ or "").strip():
            missing_doc.append(name)
        if not documented_as("genlab.diffusion", name, obj, ids):
            missing_page.append(name)
    assert not missing_doc, f"no docstring: {missing_doc}"
    assert not missing_page, f"not on docs/api/diffusion.md: {missing_page}"


def test_the_config_schema_page_lists_the_run_config(site: Path) -> None:
    html = (site / "api" / "config" / "index.html").read_text(encoding="utf-8")
    for key in ("trainer.max_time", "diffusion.prediction", "model.ema.sigma_rel", "eval.features"):
        assert f"<code>{key}</code>" in html, key


def test_the_command_reference_lists_every_argument(site: Path) -> None:
    html = (site / "api" / "commands" / "index.html").read_text(encoding="utf-8")
    for command in ("sample", "eval", "table", "ema"):
        assert f"genlab {command}" in html
    for argument in ("classifier_scale", "bootstrap", "feature_weights", "sigma_rel"):
        assert f"<code>{argument}</code>" in html, argument


def test_every_link_and_image_of_the_readme_exists() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert targets, "no links found"
    missing = [t for t in targets if "://" not in t and not (REPO / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_the_readme_stays_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the detail to a page of docs/"


def test_the_build_never_empties_a_folder_it_did_not_build(tmp_path: Path) -> None:
    # MkDocs empties its site folder before building: a user's own folder there is refused, untouched
    users = tmp_path / "site"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    build = build_site(users)
    assert build.returncode != 0 and "holds files that no docs build wrote" in build.stderr
    assert [p.name for p in users.iterdir()] == ["notes.txt"] and (users / "notes.txt").read_text() == "mine"


def test_a_built_site_is_rebuilt_in_place(site: Path) -> None:
    build = build_site(site)
    assert build.returncode == 0, build.stderr
    assert (site / "index.html").is_file() and (site / ".genlab-docs-site").is_file()
