"""`genlab table`: layout of rows and columns, a killed sweep resuming from its cells, Markdown read back to the
CSV's numbers, guidance sweeps with class accuracy, several checkpoints, W&B offline, and bad input."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import genlab.tables.runner as runner
from conftest import REPO, TINY, subprocess_env
from genlab.cli import main
from genlab.tables.render import parse_markdown_table
from genlab.tables.spec import METRICS, load_spec

GRID_SPEC = {
    "name": "tiny_grid",
    "title": "tiny grid",
    "defaults": {"sampler": "ddim"},
    "rows": [{"label": "eta 0", "eta": 0.0}, {"label": "ddpm beta", "sampler": "ddpm", "variance": "beta"}],
    "columns": {"key": "steps", "values": [2, 4], "label": "S = {value}"},
    "metrics": ["fid", "precision", "recall"],
    "seeds": [0, 1],
    "n": 12,
    "batch_size": 12,
}


def write_spec(folder: Path, spec: dict) -> Path:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny digits checkpoints: an unconditional DDPM, a CFG model and a noise-aware classifier."""
    out = {}
    for name, experiment in (("ddpm", "ddpm_digits"), ("cfg", "cfg_digits"), ("clf", "classifier_digits")):
        run_dir = tmp_path_factory.mktemp(name)
        assert main(["train", f"experiment={experiment}", *TINY, "trainer.max_steps=3", f"run_dir={run_dir}"]) == 0
        out[name] = run_dir / "checkpoints" / "last.ckpt"
    return out


def table_args(models: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [f"domain_classifier={models['clf']}", "features=domain", f"cache_dir={out / 'ref'}", f"out={out}",
            *extra]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_columns_and_markdown_read_back_to_the_csv(models: dict[str, Path], tmp_path: Path) -> None:
    spec = write_spec(tmp_path, GRID_SPEC)
    assert main(["table", str(spec), f"ckpt={models['ddpm']}", *table_args(models, tmp_path)]) == 0
    md = (tmp_path / "tiny_grid.md").read_text()
    rows = read_csv(tmp_path / "tiny_grid.csv")
    # 2 rows x 2 columns, each the mean of 2 seeds; 8 cells evaluated and stored
    assert [(r["row"], r["column"]) for r in rows] == [
        ("eta 0", "S = 2"), ("eta 0", "S = 4"), ("ddpm beta", "S = 2"), ("ddpm beta", "S = 4")]
    assert all(r["seeds"] == "0 1" and r["n"] == "12" and len(r["cells"].split()) == 2 for r in rows)
    assert [r["sampler"] for r in rows] == ["ddim", "ddim", "ddpm", "ddpm"]
    assert len(list((tmp_path / "cells" / "tiny_grid").glob("*.json"))) == 8
    assert "| FID | S = 2 | S = 4 |" in md and "Provenance:" in md and "seeds [0, 1]" in md
    assert (tmp_path / "tiny_grid.png").stat().st_size > 10_000

    # the Markdown's numbers are the CSV's, at the Markdown's precision
    parsed = parse_markdown_table(md)
    assert len(parsed) == 4
    decimals = METRICS["fid"][1]
    for r in rows:
        mean, std = parsed[(r["row"], r["column"])]
        assert mean == round(float(r["fid_mean"]), decimals) and std == round(float(r["fid_std"]), decimals)
        assert float(r["fid_std"]) > 0  # two seeds, two different sample sets

    # the cells behind one CSV line are the two seeds; the line's mean and std are theirs
    cells = [json.loads((tmp_path / "cells" / "tiny_grid" / f"{k}.json").read_text()) for k in rows[0]["cells"].split()]
    fids = [c["metrics"]["fid"] for c in cells]
    assert sorted(c["seed"] for c in cells) == [0, 1]
    assert float(rows[0]["fid_mean"]) == pytest.approx(sum(fids) / 2)
    assert float(rows[0]["fid_std"]) == pytest.approx(abs(fids[0] - fids[1]) / math.sqrt(2))
    # and every seed's value is in the CSV, in the order of its seeds column
    by_seed = {c["seed"]: c["metrics"]["fid"] for c in cells}
    assert [float(v) for v in rows[0]["fid_values"].split()] == [by_seed[int(s)] for s in rows[0]["seeds"].split()]


def test_a_killed_sweep_resumes_without_recomputing(models: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(tmp_path, {**GRID_SPEC, "name": "killed", "seeds": [0, 1, 2]})  # 12 cells
    args = ["table", str(spec), f"ckpt={models['ddpm']}", *table_args(models, tmp_path)]
    cells_dir = tmp_path / "cells" / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "genlab", *args], env=subprocess_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(list(cells_dir.glob("*.json"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in cells_dir.glob("*.json")}
    assert 2 <= len(finished) < 12

    evaluated = []
    real = runner.evaluate_cell

    def counted(ctx, cell):  # noqa: ANN001, ANN202
        evaluated.append((cell.row, cell.column, cell.seed))
        return real(ctx, cell)

    monkeypatch.setattr(runner, "evaluate_cell", counted)
    assert main(args) == 0
    assert len(evaluated) == 12 - len(finished)  # only the cells the killed run had not finished
    assert {p.name: p.stat().st_mtime_ns for p in cells_dir.glob("*.json") if p.name in finished} == finished
    assert len(read_csv(tmp_path / "killed.csv")) == 4

    evaluated.clear()
    assert main(args) == 0  # everything cached now
    assert evaluated == []


def test_guidance_sweeps_score_class_accuracy(models: dict[str, Path], tmp_path: Path) -> None:
    spec = {"name": "tiny_guidance", "title": "w and s", "defaults": {"sampler": "ddim", "steps": 3},
            "rows": [{"label": "cfg w = 0", "ckpt": "cfg", "guidance": 0.0},
                     {"label": "cfg w = 2", "ckpt": "cfg", "guidance": 2.0},
                     {"label": "ddpm", "ckpt": "ddpm"},
                     {"label": "ddpm s = 0", "ckpt": "ddpm", "classifier_scale": 0.0},
                     {"label": "ddpm s = 5", "ckpt": "ddpm", "classifier_scale": 5.0}],
            "metrics": ["fid", "class_acc", "is"], "n": 20, "batch_size": 20,
            "plot": {"kind": "sweep", "x": "guidance", "y": ["fid", "class_acc"], "tradeoff": ["class_acc", "fid"]}}
    path = write_spec(tmp_path, spec)
    args = ["table", str(path), f"ckpts.cfg={models['cfg']}", f"ckpts.ddpm={models['ddpm']}",
            f"classifier={models['clf']}", *table_args(models, tmp_path)]
    assert main(args) == 0
    rows = {r["row"]: r for r in read_csv(tmp_path / "tiny_guidance.csv")}
    for label in ("cfg w = 0", "cfg w = 2", "ddpm s = 0", "ddpm s = 5"):  # steered: an accuracy in k / 20
        acc = float(rows[label]["class_acc_mean"])
        assert 0 <= acc <= 1 and round(acc * 20, 6) == int(round(acc * 20))
    assert rows["ddpm"]["class_acc_mean"] == ""  # unsteered samples have no requested class
    assert rows["ddpm s = 0"]["fid_mean"] == rows["ddpm"]["fid_mean"]  # s = 0: the same samples, now with labels
    md = (tmp_path / "tiny_guidance.md").read_text()
    assert "| | FID | Accuracy | IS |" in md and "| ddpm | " in md and " | - | " in md
    assert (tmp_path / "tiny_guidance.png").is_file()


def test_wandb_gets_the_table_offline(models: dict[str, Path], tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {**GRID_SPEC, "name": "logged", "seeds": [0], "columns": {
        "key": "steps", "values": [2], "label": "S = {value}"}})
    assert main(["table", str(spec), f"ckpt={models['ddpm']}", "wandb=true", *table_args(models, tmp_path)]) == 0
    (table_file,) = tmp_path.glob("wandb/offline-run-*/files/media/table/tables/logged_*.table.json")
    logged = json.loads(table_file.read_text())
    csv_rows = read_csv(tmp_path / "logged.csv")
    assert logged["columns"] == list(csv_rows[0].keys())
    fid = logged["columns"].index("fid_mean")
    assert [row[fid] for row in logged["data"]] == pytest.approx([float(r["fid_mean"]) for r in csv_rows])
    assert list(tmp_path.glob("wandb/offline-run-*/files/media/images/tables/logged_plot_*.png"))


def test_sigma_rel_columns_rebuild_the_ema_after_training(models: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "posthoc"
    assert main(["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=6", "model.ema.kind=power",
                 "model.ema.posthoc=true", "model.ema.posthoc_every_n_steps=2", f"run_dir={run}"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["ema", f"ckpt={ckpt}", "sigma_rel=0.07", f"out={tmp_path / 'ema07.ckpt'}"]) == 0
    spec = write_spec(tmp_path, {**GRID_SPEC, "name": "ema_length", "seeds": [0],
                                 "rows": [{"label": "rebuilt", "steps": 3}],
                                 "columns": {"key": "sigma_rel", "values": [0.03, 0.07], "label": "σ_rel {value}"}})
    assert main(["table", str(spec), f"ckpt={models['ddpm']}", *table_args(models, tmp_path)]) == 2
    assert "no power-EMA snapshots" in capsys.readouterr().err  # a run trained without model.ema.posthoc
    assert main(["table", str(spec), f"ckpt={ckpt}", *table_args(models, tmp_path)]) == 0
    rows = {r["column"]: r for r in read_csv(tmp_path / "ema_length.csv")}
    assert set(rows) == {"σ_rel 0.03", "σ_rel 0.07"}
    cells = [json.loads(p.read_text()) for p in (tmp_path / "cells" / "ema_length").glob("*.json")]
    assert sorted(c["weights"] for c in cells) == ["posthoc ema sigma_rel=0.03", "posthoc ema sigma_rel=0.07"]
    # The 0.07 cell scores exactly what `genlab ema sigma_rel=0.07`'s checkpoint scores with the same sampler and seed.
    same = write_spec(tmp_path, {**GRID_SPEC, "name": "from_genlab_ema", "seeds": [0], "columns": None,
                                 "rows": [{"label": "genlab ema", "steps": 3}]})
    assert main(["table", str(same), f"ckpt={tmp_path / 'ema07.ckpt'}", *table_args(models, tmp_path)]) == 0
    direct = read_csv(tmp_path / "from_genlab_ema.csv")[0]
    assert float(rows["σ_rel 0.07"]["fid_mean"]) == pytest.approx(float(direct["fid_mean"]), rel=1e-6)
    assert float(rows["σ_rel 0.03"]["fid_mean"]) != pytest.approx(float(direct["fid_mean"]), rel=1e-6)


@pytest.mark.parametrize("change, expected", [
    ({"rows": [{"label": "x", "temperature": 1.0}]}, "unknown setting 'temperature'"),
    ({"rows": [{"label": "x", "steps": "many"}]}, "steps='many' must be int"),
    ({"rows": [{"label": "x", "steps": True}]}, "steps=True must be int"),
    ({"rows": [{"label": "x", "clip": "no"}]}, "clip='no' must be bool"),
    ({"metrics": ["fid", "lpips"]}, "metrics ['lpips'] unknown"),
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"rows": [{"label": "x", "sampler": "plms"}]}, "sampler=plms is not a valid choice: use one of ddpm, ddim, dpmpp_2m"),
    ({"columns": {"key": "sigma_rel", "values": [0.05, 0.5]}}, "sigma_rel must be in (0, 0.28), got 0.5"),
    ({"columns": None, "plot": {"kind": "tradeoffs", "pairs": [["fid", "lpips"]], "lines": {"a": ["x"]}}},
     "plot.pairs name lpips"),
    ({"columns": None, "rows": [{"label": "x"}], "plot": {"kind": "tradeoffs", "pairs": [["fid", "precision"]],
                                                          "lines": {"a": ["x", "y"]}}},
     "plot.lines names rows that do not exist: y"),
    ({"rows": [{"label": "x", "guide_scale": "strong"}]}, "guide_scale='strong' must be"),
    ({"rows": [{"label": "x", "rho": "steep"}]}, "rho='steep' must be"),
    ({"rows": [{"label": "x", "sampler": "dpmpp_2m", "rho": 2}]}, "rho=2 shapes the karras grid"),
    ({"rows": [{"label": "x", "sampler": "heun", "sigma_max": 0}]}, "sigma_max=0.0 is out of range"),
])
def test_bad_specs_exit_2(tmp_path: Path, change: dict, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, {**GRID_SPEC, **change})
    assert main(["table", str(spec), "ckpt=x.ckpt"]) == 2
    assert expected in capsys.readouterr().err


def test_bad_arguments_exit_2(models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, GRID_SPEC)
    cases = [
        (["table"], "needs a sweep spec first"),
        (["table", "no_such_spec"], "does not exist"),
        (["table", str(spec)], "needs ckpt=PATH"),
        (["table", str(spec), "ckpt=missing.ckpt"], "missing.ckpt does not exist"),
        (["table", str(spec), f"ckpt={models['ddpm']}", "colour=red"], "unknown argument 'colour'"),
        (["table", "model_zoo", f"ckpt={models['ddpm']}"], "pass ckpts.cfg=PATH"),
        (["table", str(spec), f"ckpt={models['ddpm']}", "values=[2,5000]", *table_args(models, tmp_path)],
         "steps=5000 must lie in"),
    ]
    for args, expected in cases:
        assert main(args) == 2, args
        assert expected in capsys.readouterr().err, args


def test_a_bool_setting_loads(tmp_path: Path) -> None:
    """clip is the one bool setting: true and false both load, and reach the cell's settings as given."""
    spec = load_spec(write_spec(tmp_path, {**GRID_SPEC, "rows": [{"label": "clamped", "clip": True},
                                                                 {"label": "not clamped", "clip": False}]}))
    assert {c.settings["clip"] for c in spec.cells()} == {True, False}


def test_shipped_specs_load() -> None:
    for path in sorted((REPO / "experiments" / "tables").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.cells(), path
        if spec.paper:
            assert spec.paper["source"] and all(len(v) == len(spec.paper["columns"]) for v in spec.paper["rows"].values())


def test_new_features_and_metrics_are_table_columns(models: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """features=dinov2 in a table, density and coverage as columns (and in the W&B table); IS refused without
    class logits, CMMD without CLIP."""
    pytest.importorskip("timm")
    from conftest import random_dinov2

    weights = random_dinov2(tmp_path / "dinov2.pth", seed=0)
    spec = write_spec(tmp_path, {**GRID_SPEC, "name": "dino", "seeds": [0], "metrics": ["fid", "density", "coverage"],
                                 "columns": {"key": "steps", "values": [2], "label": "S = {value}"}})
    args = ["table", str(spec), f"ckpt={models['ddpm']}", "features=dinov2", f"feature_weights={weights}",
            f"cache_dir={tmp_path / 'ref'}", f"out={tmp_path}", "wandb=true"]
    assert main(args) == 0
    rows = read_csv(tmp_path / "dino.csv")
    assert all(float(r["fid_mean"]) > 0 and r["density_mean"] != "" and 0 <= float(r["coverage_mean"]) <= 1
               for r in rows)
    md = (tmp_path / "dino.md").read_text()
    assert "- Features: `dinov2` (genlab-dinov2, vit-l-14" in md
    assert "- Protocol: torch-fidelity; images reach the features by: bilinear, no antialiasing" in md
    (table_file,) = tmp_path.glob("wandb/offline-run-*/files/media/table/tables/dino_*.table.json")
    assert {"density_mean", "coverage_mean"} <= set(json.loads(table_file.read_text())["columns"])
    for metrics, word in ((["fid", "is"], "is"), (["fid", "cmmd"], "cmmd")):
        bad = write_spec(tmp_path, {**GRID_SPEC, "name": f"bad_{word}", "metrics": metrics})
        assert main(["table", str(bad), *args[2:]]) == 2
        assert f"shows {word}, which features=dinov2 does not give" in capsys.readouterr().err


def test_a_long_title_is_wrapped_to_the_figure() -> None:
    from genlab.tables.plot import wrapped_title

    title = "DDIM η = 0 and DDPM σ̂ at S = 10, with and without clamping the predicted x0 in every step"
    narrow = wrapped_title(title, 4.0)
    assert len(narrow.splitlines()) > 1 and max(map(len, narrow.splitlines())) <= 48
    assert narrow.replace("\n", " ") == title
    assert wrapped_title(title, 16.5) == title  # three panels: one line


def test_spread_is_shown_except_for_an_equal_count() -> None:
    from genlab.tables.render import format_value

    assert format_value("fid", 1.234, 0.5) == "1.23 ± 0.50"
    assert format_value("class_acc", 1.0, 0.0) == "1.000 ± 0.000"  # three seeds that agree: still a spread
    assert format_value("nfe", 20.0, 0.0) == "20"  # every seed spends the same evaluations
    assert format_value("nfe", 15.0, 1.0).startswith("15 ± ")
    assert format_value("fid", 2.0, None) == "2.00"  # one seed


def test_a_cell_records_the_checkpoint_as_named(models: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative ckpt= stays relative in the cell's JSON: results committed from a table carry no machine's paths."""
    spec = write_spec(tmp_path, {**GRID_SPEC, "name": "named", "seeds": [0], "columns": None,
                                 "rows": [{"label": "eta 0", "eta": 0.0, "steps": 2}]})
    monkeypatch.chdir(models["ddpm"].parents[1])
    assert main(["table", str(spec), "ckpt=checkpoints/last.ckpt", *table_args(models, tmp_path)]) == 0
    [cell] = [json.loads(p.read_text()) for p in (tmp_path / "cells" / "named").glob("*.json")]
    assert cell["checkpoint"] == "checkpoints/last.ckpt"
