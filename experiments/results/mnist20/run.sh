#!/usr/bin/env bash
# The paper tables on MNIST, redone on the 20-minute recipes (issue 27; see README.md here). Rebuilds every model and
# table from nothing; run from the repository root, with MNIST under $DATA/MNIST/raw/. Every step is resumable:
# a finished training run is kept (its last.ckpt and a run.json status), and `genlab table` skips finished cells.
# Two jobs at a time, one thread each (OMP_NUM_THREADS=1), as the models were trained.
set -euo pipefail
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUNS=${RUNS:-runs/fam}
OUT=experiments/results/mnist20
train() {  # train RUN_DIR ARGS...: once (a finished run is kept)
  local run=$1; shift
  if [ -f "$run/checkpoints/last.ckpt" ] && grep -q '"status"' "$run/run.json"; then return; fi
  genlab train "$@" data.root=$DATA trainer.enable_progress_bar=false run_dir=$run
}

# Models: each 20-minute recipe for 20 minutes of one core (benchmarks/results/families.md trained the same runs),
# the judge (seed 1: its features give FID and it scores class accuracy; it never steers a sample), and the
# classifier that guides (seed 0).
train $RUNS/ddpm experiment=ddpm_mnist_20min & train $RUNS/flow experiment=flow_mnist_20min & wait
train $RUNS/edm experiment=edm_mnist_20min & train $RUNS/gan experiment=gan_mnist_20min & wait
train $RUNS/cfg_p01 experiment=cfg_mnist_20min model.p_uncond=0.1 &
train $RUNS/judge experiment=classifier_mnist data=mnist28 unet=mnist28 unet.base_channels=16 trainer.max_steps=1200 \
    trainer.val_every_n_steps=600 seed=1 & wait
train $RUNS/guide_clf experiment=classifier_mnist data=mnist28 unet=mnist28 unet.base_channels=16 \
    trainer.max_steps=1200 trainer.val_every_n_steps=600 seed=0

# Tables: 1,000 samples per cell, sample seeds 0, 1 and 2 (mean ± std in the Markdown, every value in the CSV).
JUDGE=$RUNS/judge/checkpoints/last.ckpt
EVAL=(n=1000 "seeds=[0,1,2]" features=domain domain_classifier=$JUDGE eval_classifier=$JUDGE
      cache_dir=runs/tables_mnist20/cache out=$OUT)
genlab table cfg_guidance ckpt=$RUNS/cfg_p01/checkpoints/last.ckpt "${EVAL[@]}"
