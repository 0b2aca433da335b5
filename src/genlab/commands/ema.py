"""`genlab ema ckpt=PATH sigma_rel=S`: rebuild the EMA of any length after training from a run's power-EMA
snapshots (model.ema.posthoc=true), and write it as a checkpoint that every command can sample."""

from __future__ import annotations

from pathlib import Path

from genlab.commands.args import EMAArgs, parse_command_args
from genlab.runs import RunDir
from genlab.runs.checkpoint import AtomicCheckpointIO, read_checkpoint
from genlab.training.callbacks.posthoc_ema import read_snapshots, reconstruct


def ema_command(args: list[str]) -> Path:
    """Run `genlab ema`; return the checkpoint written."""
    a = parse_command_args(EMAArgs, args, "ema", {"ckpt": "the checkpoint of a run trained with "
                                                          "model.ema.posthoc=true", "sigma_rel": "the EMA length"})
    ckpt = read_checkpoint(a.ckpt)
    run = RunDir.of_checkpoint(Path(a.ckpt))
    snaps = read_snapshots(run.ema_snapshots, int(ckpt.get("global_step", 0)))
    rebuilt = reconstruct(ckpt, snaps, a.sigma_rel)
    ckpt["state_dict"] = rebuilt.state_dict
    ckpt["genlab_posthoc_ema"] = rebuilt.record()
    out = Path(a.out) if a.out else run.checkpoints / f"posthoc-sigma{a.sigma_rel:.3f}.ckpt"
    AtomicCheckpointIO().save_checkpoint(ckpt, out)
    print(f"genlab: wrote {out}: the EMA with sigma_rel={a.sigma_rel:g} (gamma {rebuilt.gamma:.2f}) at step "
          f"{int(rebuilt.at_updates)}, from {len(rebuilt.snapshots)} snapshots; its averaging profile is within "
          f"{100 * rebuilt.profile_rel_error:.2f} % (L2) of the target's")
    return out
