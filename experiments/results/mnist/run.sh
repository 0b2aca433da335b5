#!/usr/bin/env bash
# The old MNIST FID-against-NFE table (see README.md here; every other table moved to ../mnist20/).
# Run from the repository root; MNIST must be under $DATA/MNIST/raw/. One thread per job.
set -euo pipefail
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=experiments/results/mnist
# EMA: decay 0.995 from step 500 (the configs' 0.999 from step 0 still holds 8 % of the random initial weights
# at step 2,500, and the samples were noise at step 1,000).
SMALL="unet.base_channels=16 unet.dropout=0.0 model.ema.decay=0.995 model.ema.start_step=500 trainer.val_every_n_steps=500
    trainer.enable_progress_bar=false"

# The DDPM (0.41M-parameter U-Net, 2,500 steps of batch 64) and the judge classifier (seed 1), whose features give
# the FID.
genlab train experiment=ddpm_mnist data.root=$DATA $SMALL trainer.max_steps=2500 run_dir=runs/ddpm_mnist/cpu
genlab train experiment=classifier_mnist data.root=$DATA unet.base_channels=16 trainer.max_steps=1500 seed=1 \
    trainer.val_every_n_steps=500 trainer.enable_progress_bar=false run_dir=runs/classifier_mnist/judge

JUDGE=runs/classifier_mnist/judge/checkpoints/last.ckpt
EVAL="n=500 features=domain domain_classifier=$JUDGE eval_classifier=$JUDGE out=$OUT"
genlab table nfe_sweep ckpt=runs/ddpm_mnist/cpu/checkpoints/last.ckpt $EVAL
