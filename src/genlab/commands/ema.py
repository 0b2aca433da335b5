"""`genlab ema ckpt=PATH sigma_rel=S`: rebuild the EMA of any length after training from a run's power-EMA
snapshots (model.ema.posthoc=true), and write it as a checkpoint that every command can sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlab.commands.args import EMAArgs, parse_command_args
from genlab.errors import GenlabError
from genlab.runs import RunDir
from genlab.runs.checkpoint import AtomicCheckpointIO, read_checkpoint
from genlab.training.callbacks.posthoc_ema import posthoc_fit
from genlab.training.callbacks.power_ema import sigma_rel_to_gamma


def read_snapshots(run: RunDir, last_step: int) -> list[dict[str, Any]]:
    """The run's snapshots up to `last_step` (the checkpoint's), oldest first."""
    files = sorted(run.ema_snapshots.glob("step*-sigma*.pt"))
    snaps = [torch.load(f, map_location="cpu", weights_only=True) for f in files]
    snaps = [s for s in snaps if s["step"] <= last_step]
    if not snaps:
        raise GenlabError(f"no power-EMA snapshots in {run.ema_snapshots}: train with model.ema.posthoc=true (and "
                          "model.ema.posthoc_every_n_steps=N) to be able to choose the EMA length afterwards.")
    return snaps


def ema_command(args: list[str]) -> Path:
    """Run `genlab ema`; return the checkpoint written."""
    a = parse_command_args(EMAArgs, args, "ema", {"ckpt": "the checkpoint of a run trained with "
                                                          "model.ema.posthoc=true", "sigma_rel": "the EMA length"})
    try:
        gamma = sigma_rel_to_gamma(a.sigma_rel)
    except ValueError as exc:
        raise GenlabError(f"sigma_rel={a.sigma_rel}: {exc}.") from None
    ckpt = read_checkpoint(a.ckpt)
    run = RunDir.of_checkpoint(Path(a.ckpt))
    snaps = read_snapshots(run, int(ckpt.get("global_step", 0)))
    t_target = float(max(s["updates"] for s in snaps))
    points = [(float(s["updates"]), float(s["gamma"])) for s in snaps]
    x, rel_error = posthoc_fit(points, t_target, gamma)
    state = dict(ckpt["state_dict"])
    for key in snaps[0]["params"]:
        state[key] = sum(float(w) * s["params"][key].double() for w, s in zip(x, snaps)).to(state[key].dtype)
    ckpt["state_dict"] = state
    ckpt["genlab_posthoc_ema"] = {"sigma_rel": a.sigma_rel, "gamma": gamma, "at_updates": t_target,
                                  "profile_rel_error": rel_error,
                                  "snapshots": [{"step": s["step"], "sigma_rel": s["sigma_rel"], "weight": float(w)}
                                                for s, w in zip(snaps, x)]}
    out = Path(a.out) if a.out else run.checkpoints / f"posthoc-sigma{a.sigma_rel:.3f}.ckpt"
    AtomicCheckpointIO().save_checkpoint(ckpt, out)
    print(f"genlab: wrote {out}: the EMA with sigma_rel={a.sigma_rel:g} (gamma {gamma:.2f}) at step {int(t_target)}, "
          f"from {len(snaps)} snapshots; its averaging profile is within {100 * rel_error:.2f} % (L2) of the target's")
    return out
