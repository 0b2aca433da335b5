"""Checkpoints are read with weights_only=True: one that needs arbitrary unpickling is refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genlab.cli import main


class Payload:
    """Any class outside torch's allow-list: unpickling it would import and run code."""


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"config": {}}, "payload": Payload()}, path)
    assert main(["sample", f"ckpt={path}", f"out={tmp_path / 'x.png'}"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "weights_only=True" in err and str(path) in err
    assert "Traceback" not in err
