"""The model-kind registry is the one place that knows a kind by its name: code asks what a kind does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from genlab.config import KINDS, kind_facts, kinds_where
from genlab.errors import GenlabError
from genlab.models import MODEL_KINDS, facts_of, kind_info, kind_of

SRC = Path(__file__).resolve().parents[2] / "src" / "genlab"
REGISTRY = {SRC / "config" / "kinds.py", SRC / "models" / "registry.py"}


def kind_name_tests(path: Path) -> list[str]:
    """Comparisons of something named *kind* with a model kind's name, e.g. `cfg.model.kind == "gan"`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        parts = [node.left, *node.comparators]
        names = {c.value for p in parts for c in ast.walk(p) if isinstance(c, ast.Constant) and c.value in KINDS}
        about_kind = any("kind" in ast.unparse(p) for p in parts if not isinstance(p, ast.Constant))
        if names and about_kind:
            where = path.relative_to(SRC) if path.is_relative_to(SRC) else path.name
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_code_outside_the_registry_tests_a_kinds_name() -> None:
    found = [hit for path in sorted(SRC.rglob("*.py")) if path not in REGISTRY for hit in kind_name_tests(path)]
    assert found == []


def test_the_check_finds_a_name_test(tmp_path: Path) -> None:  # the scan above can fail
    probe = tmp_path / "probe.py"
    probe.write_text('def f(cfg):\n    return cfg.model.kind != "gan" or kind in ("ddpm", "x")\n')
    assert len(kind_name_tests(probe)) == 2


def test_every_kind_has_its_facts_module_and_panels() -> None:
    assert set(MODEL_KINDS) == set(KINDS)
    for kind, info in MODEL_KINDS.items():
        assert info.facts is kind_facts(kind) and info.panels and kind_of(info.module.__new__(info.module)) == kind
    assert kinds_where("sampler") == ["ddpm"] and kinds_where("classifies") == ["classifier"]
    assert kinds_where("generates") == ["ddpm", "gan"]
    with pytest.raises(GenlabError, match="unknown model kind 'vae': genlab knows ddpm, gan, classifier"):
        kind_info("vae")
    with pytest.raises(GenlabError, match="unknown model kind 'vae'"):
        kind_facts("vae")


def test_facts_of_a_built_module() -> None:
    from conftest import TINY
    from genlab.build import build_datamodule, resolve_data_keys
    from genlab.config import load_config, parse_overrides, to_container
    from genlab.models import build_module

    for experiment in ("ddpm_digits", "gan_digits", "classifier_digits"):
        cfg = load_config(parse_overrides([f"experiment={experiment}", *TINY]))
        resolve_data_keys(cfg, build_datamodule(cfg))
        module = build_module(to_container(cfg))
        assert facts_of(module) is kind_facts(cfg.model.kind)
