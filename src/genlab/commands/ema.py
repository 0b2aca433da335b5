"""`genlab ema ckpt=PATH sigma_rel=S`: rebuild the EMA of any length after training from a run's power-EMA
snapshots (model.ema.posthoc=true), and write it as a checkpoint that every command can sample."""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.commands.args import EMAArgs, parse_command_args
from genlab.ema.posthoc import read_snapshots, reconstruct
from genlab.errors import GenlabError
from genlab.outputs import check_file_out, free_name
from genlab.runs import RunDir
from genlab.runs.checkpoint import AtomicCheckpointIO, read_checkpoint

MARK = "genlab_posthoc_ema"  # the key genlab ema adds: its checkpoints may be written again, no other


def written_by_ema(path: Path) -> str | None:
    """"genlab ema" when `path` is a checkpoint that genlab ema wrote; None for any other file."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a checkpoint, truncated, foreign: not ours either way
        return None
    return "genlab ema" if isinstance(ckpt, dict) and MARK in ckpt else None


def check_ema_out(out: Path, ckpt: Path, default: Path) -> None:
    """out= is a .ckpt that is new or was written by genlab ema, and is not the checkpoint read."""
    hint = f"Choose another out=, e.g. out={free_name(default)}."
    if out.suffix != ".ckpt":
        raise GenlabError(f"out={out}: genlab ema writes a checkpoint; give a file name ending in .ckpt. {hint}")
    if out.exists() and out.resolve() == ckpt.resolve():
        raise GenlabError(f"out={out} is the checkpoint being read (ckpt=): writing there would replace its own EMA "
                          f"weights, which later sampling and resuming rely on. {hint}")
    check_file_out(out, hint, mark=written_by_ema)


def ema_command(args: list[str]) -> Path:
    """Run `genlab ema`; return the checkpoint written."""
    a = parse_command_args(EMAArgs, args, "ema", {"ckpt": "the checkpoint of a run trained with "
                                                          "model.ema.posthoc=true", "sigma_rel": "the EMA length"})
    ckpt = read_checkpoint(a.ckpt)
    run = RunDir.of_checkpoint(Path(a.ckpt))
    default = run.checkpoints / f"posthoc-sigma{a.sigma_rel:.3f}.ckpt"
    out = Path(a.out) if a.out else default
    check_ema_out(out, Path(a.ckpt), default)
    snaps = read_snapshots(run.ema_snapshots, int(ckpt.get("global_step", 0)))
    rebuilt = reconstruct(ckpt, snaps, a.sigma_rel)
    ckpt["state_dict"] = rebuilt.state_dict
    ckpt[MARK] = rebuilt.record()
    AtomicCheckpointIO().save_checkpoint(ckpt, out)
    print(f"genlab: wrote {out}: the EMA with sigma_rel={a.sigma_rel:g} (gamma {rebuilt.gamma:.2f}) at step "
          f"{int(rebuilt.at_updates)}, from {len(rebuilt.snapshots)} snapshots; its averaging profile is within "
          f"{100 * rebuilt.profile_rel_error:.2f} % (L2) of the target's")
    return out
