"""The `genlab` command: train | sample | config | invert | interpolate | compare | eval | table | ema.

Bad input exits with status 2 and a message.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable

from genlab import __version__
from genlab.errors import GenlabError, disk_full, first_line, mount_point

USAGE = """usage: genlab COMMAND [key=value ...]      genlab COMMAND --help: every argument, its type and default

commands:
  train   [experiment=NAME] [group=BLOCK] [key=value ...]   train a model; writes runs/<experiment>/<time>/
  sample  ckpt=PATH [sampler=SAMPLER steps=S eta=0 n=64 seed=0 out=grid.png|DIR/ ema=true]   (GAN: n seed out ema)
          no sampler: the checkpoint's own sampler block; steps counts network evaluations for every sampler
          (a named sampler's default: ddim 50, ddpm all T, dpmpp_2m 20, unipc 10, heun 18, euler 50)
  config  [experiment=NAME] [key=value ...]                  print the resolved config
  invert  ckpt=PATH image=IMAGE steps=S [out=recon.png ema=true clip=false device=auto spacing=uniform label=K]
          DDIM-encode an image to x_T and decode it again: PNG target | x_T | reconstruction, MSE in a .json
          GAN checkpoints: optimise z for `steps` Adam steps [restarts=4 lr=0.05 feature_weight=0 seed=0]:
          PNG target | start | reconstruction, the error per step in the .json and in <out>_error.png
  interpolate ckpt=PATH a=SOURCE b=SOURCE [n=8 steps=50 out=interp.png ema=true clip=true device=auto label=K]
          decode n latents on the great circle (slerp) from x_T(a) to x_T(b), endpoints included
  compare RUN_DIR ... [out=compare.md]
          one table of runs: experiment, overrides, steps, wall time, final loss, best FID per extractor, checkpoint
  eval    ckpt=PATH [n=10000 sampler=SAMPLER steps=S eta=0 variance=beta|beta_tilde guidance=W
          features=inception|domain|dinov2|clip feature_model=NAME feature_weights=PATH protocol=torch-fidelity|clean
          domain_classifier=PATH inception_weights=PATH cache_dir=DIR split=test nll=false nll_method=bound|ode nll_images=N
          out=eval.json seed=0 seeds=[0,1,2] bootstrap=20 batch_size=250 ema=true device=auto]
          FID/KID/IS/precision/recall/density/coverage (CMMD with clip) of n samples against a dataset split, with
          a spread (seeds or bootstrap) and the protocol: a JSON and a Markdown row
  table   SPEC [ckpt=PATH ckpts.NAME=PATH n=N seeds=[0,1] features=inception|domain|dinov2|clip domain_classifier=PATH
          classifier=PATH eval_classifier=PATH out=tables batch_size=250 wandb=true|false ...]
          run a sweep spec (experiments/tables/*.yaml, or its name): every cell evaluated as genlab eval does,
          cached by its settings' hash (a rerun skips finished cells); writes <out>/<name>.md, .csv and .png
  ema     ckpt=PATH sigma_rel=S [out=PATH]
          rebuild the EMA of length sigma_rel after training from a run's power-EMA snapshots (model.ema.posthoc=true)
  SAMPLER is ddim, ddpm, dpmpp_2m, unipc, heun or euler (sample's default: ddim; eval's: the checkpoint's own).
  IMAGE is index:N (item N of the run's training set; a bare N means the same) or a PNG/JPG path.
  SOURCE is seed:N (x_T drawn with seed N; a bare N means the same), index:N, or a PNG/JPG path (./N for a file N).

Experiments live in experiments/, building blocks in configs/<group>/. Examples:
  genlab train experiment=ddpm_digits trainer.max_steps=500
  genlab train experiment=ddpm_mnist data.root=../shared/data
  genlab train experiment=gan_digits
  genlab sample ckpt=runs/ddpm_digits/.../checkpoints/last.ckpt sampler=ddim steps=50 n=64 out=grid.png
  genlab invert ckpt=runs/ddpm_digits/.../checkpoints/last.ckpt image=index:12 steps=50 out=recon.png
  genlab interpolate ckpt=runs/ddpm_digits/.../checkpoints/last.ckpt a=seed:0 b=index:12 n=8 out=interp.png
  genlab eval ckpt=runs/ddpm_digits/.../checkpoints/last.ckpt n=1000 features=domain domain_classifier=CLF.ckpt
  genlab table ddim_steps_eta ckpt=runs/ddpm_mnist/.../checkpoints/last.ckpt n=1000 features=domain domain_classifier=CLF.ckpt
"""

# Each command's module in genlab.commands and its entry function. A command's module is imported only when the
# command runs, so `genlab --help` does not load torch, Lightning and W&B.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train_command"),
    "sample": ("sample", "sample_command"),
    "config": ("train", "config_command"),
    "invert": ("invert", "invert_command"),
    "interpolate": ("invert", "interpolate_command"),
    "compare": ("compare", "compare_command"),
    "eval": ("eval", "eval_command"),
    "table": ("table", "table_command"),
    "ema": ("ema", "ema_command"),
}


def command_function(command: str) -> Callable[[list[str]], object]:
    """The entry function of a genlab command."""
    module, function = COMMANDS[command]
    return getattr(importlib.import_module(f"genlab.commands.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `genlab` script and of `python -m genlab`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"genlab {__version__}")
        return 0
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"genlab: unknown command {command!r}.\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in args):  # generated from the argument dataclasses and the run schema
        print(importlib.import_module("genlab.commands.help").help_text(command), end="")
        return 0
    try:
        command_function(command)(args)
    except GenlabError as exc:
        print(f"genlab {command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a full disk while writing anything (logs, grids, snapshots) is the user's to fix
        full = disk_full(exc)
        if full is None:
            raise
        written = getattr(full, "filename", None)
        where = f"{mount_point(written)} (writing {written})" if written else f"the device ({first_line(full)})"
        print(f"genlab {command}: error: no space left on {where}. Free some space, or write to another disk; a run "
              "continues with resume=auto.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
