"""Post-hoc EMA (Karras et al. 2024, sec. 3.2): keep two power-function EMAs during training, save their snapshots
every N steps, and after training rebuild the average of any length sigma_rel as a least-squares combination of the
snapshots (`genlab ema`).

A power EMA of exponent gamma taken at step t averages the weights with the normalised profile
p(tau; gamma, t) = (gamma + 1) tau^gamma / t^(gamma + 1) on [0, t] (power.py). Every snapshot is the weights
integrated against its profile, so a combination sum_i x_i snapshot_i is the weights integrated against
sum_i x_i p_i. The x that bring that profile closest (in L2) to the target's solve A x = b with A_ij = <p_i, p_j>,
b_i = <p_i, p_target>, where for two power profiles (m = min(t_a, t_b))
    <p_a, p_b> = (g_a + 1)(g_b + 1) m^(g_a + g_b + 1) / ((g_a + g_b + 1) t_a^(g_a + 1) t_b^(g_b + 1)).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from genlab.ema.power import sigma_rel_to_gamma
from genlab.errors import GenlabError, first_line


def profile_inner(t_a: float, g_a: float, t_b: float, g_b: float) -> float:
    """<p_a, p_b> of two normalised power profiles (closed form, float64)."""
    m = min(t_a, t_b)
    log = ((g_a + g_b + 1) * np.log(m) - (g_a + 1) * np.log(t_a) - (g_b + 1) * np.log(t_b))
    return float((g_a + 1) * (g_b + 1) / (g_a + g_b + 1) * np.exp(log))


def posthoc_fit(snapshots: Sequence[tuple[float, float]], t_target: float, g_target: float
                ) -> tuple[np.ndarray, float]:
    """The least-squares weights of the snapshots (each (updates, gamma)) whose profiles best make the target's,
    and the relative L2 distance between the combined profile and the target's."""
    A = np.array([[profile_inner(ta, ga, tb, gb) for tb, gb in snapshots] for ta, ga in snapshots])
    b = np.array([profile_inner(ta, ga, t_target, g_target) for ta, ga in snapshots])
    x = np.linalg.lstsq(A, b, rcond=None)[0]
    target = profile_inner(t_target, g_target, t_target, g_target)
    return x, float(np.sqrt(max(0.0, x @ A @ x - 2 * x @ b + target) / target))


@dataclass(frozen=True)
class Reconstruction:
    """The weights of the EMA of length sigma_rel rebuilt from a run's snapshots, and how well they make it."""

    state_dict: dict[str, Tensor]  # the checkpoint's state_dict with the averaged parameters replaced
    sigma_rel: float
    gamma: float
    at_updates: float
    profile_rel_error: float  # relative L2 distance of the combined averaging profile from the target's
    snapshots: list[dict[str, Any]]  # step, sigma_rel and weight of each snapshot used

    def record(self) -> dict[str, Any]:
        return {"sigma_rel": self.sigma_rel, "gamma": self.gamma, "at_updates": self.at_updates,
                "profile_rel_error": self.profile_rel_error, "snapshots": self.snapshots}


def read_snapshots(folder: Path, last_step: int) -> list[dict[str, Any]]:
    """The snapshots in `folder` up to `last_step` (the checkpoint's), oldest first."""
    snaps = [read_snapshot(f) for f in sorted(Path(folder).glob("step*-sigma*.pt"))]
    snaps = [s for s in snaps if s["step"] <= last_step]
    if not snaps:
        raise GenlabError(f"no power-EMA snapshots in {folder}: train with model.ema.posthoc=true (and "
                          "model.ema.posthoc_every_n_steps=N) to be able to choose the EMA length afterwards.")
    return snaps


SNAPSHOT_KEYS = ("step", "updates", "sigma_rel", "gamma", "params")


def read_snapshot(path: Path) -> dict[str, Any]:
    """One snapshot file, or a one-line error naming it (truncated by a full disk or a copy cut short, or foreign)."""
    try:
        snap = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle errors, foreign formats
        raise GenlabError(f"the post-hoc EMA snapshot {path} cannot be read ({first_line(exc).split('. ')[0]}); "
                          f"it may be truncated. Move it out of {path.parent} to rebuild the EMA from the other "
                          "snapshots.") from None
    if not isinstance(snap, dict) or any(k not in snap for k in SNAPSHOT_KEYS):
        raise GenlabError(f"{path} is not a genlab post-hoc EMA snapshot (it lacks {', '.join(SNAPSHOT_KEYS)}); move "
                          f"it out of {path.parent}.")
    return snap


def reconstruct(ckpt: dict[str, Any], snaps: list[dict[str, Any]], sigma_rel: float) -> Reconstruction:
    """The EMA of length `sigma_rel` at the last of `snaps` (read_snapshots up to the checkpoint's step)."""
    try:
        gamma = sigma_rel_to_gamma(sigma_rel)
    except ValueError as exc:
        raise GenlabError(f"sigma_rel={sigma_rel}: {exc}.") from None
    t_target = float(max(s["updates"] for s in snaps))
    x, rel_error = posthoc_fit([(float(s["updates"]), float(s["gamma"])) for s in snaps], t_target, gamma)
    state = dict(ckpt["state_dict"])
    for key in snaps[0]["params"]:
        state[key] = sum(float(w) * s["params"][key].double() for w, s in zip(x, snaps)).to(state[key].dtype)
    used = [{"step": s["step"], "sigma_rel": s["sigma_rel"], "weight": float(w)} for s, w in zip(snaps, x)]
    return Reconstruction(state, sigma_rel, gamma, t_target, rel_error, used)


def posthoc_weights(snapshots: Sequence[tuple[float, float]], t_target: float, g_target: float) -> np.ndarray:
    """The weights of posthoc_fit."""
    return posthoc_fit(snapshots, t_target, g_target)[0]
