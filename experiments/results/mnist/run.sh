#!/usr/bin/env bash
# CPU-scale reproductions of the DDIM, CFG and classifier-guidance trends on MNIST (see README.md here).
# Run from the repository root; MNIST must be under $DATA/MNIST/raw/. Each job uses one thread, so two jobs
# share a 2-core machine without oversubscribing it (the commands below were run two at a time).
set -euo pipefail
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=experiments/results/mnist
# EMA: decay 0.995 from step 500 (the configs' 0.999 from step 0 still holds 8 % of the random initial weights
# at step 2,500, and the samples were noise at step 1,000).
SMALL="unet.base_channels=16 unet.dropout=0.0 model.ema.decay=0.995 model.ema.start_step=500 trainer.val_every_n_steps=500
    trainer.enable_progress_bar=false"

# Models: a DDPM and a CFG model (0.41M-parameter U-Net, 2,500 steps of batch 64), the classifier that guides,
# and a second classifier ("judge", another seed) whose features give the FID and which scores class accuracy:
# it never steers a sample.
genlab train experiment=ddpm_mnist data.root=$DATA $SMALL trainer.max_steps=2500 run_dir=runs/ddpm_mnist/cpu
genlab train experiment=cfg_mnist data.root=$DATA $SMALL trainer.max_steps=2500 run_dir=runs/cfg_mnist/cpu
genlab train experiment=classifier_mnist data.root=$DATA unet.base_channels=16 trainer.max_steps=1500 \
    trainer.val_every_n_steps=500 trainer.enable_progress_bar=false run_dir=runs/classifier_mnist/cpu
genlab train experiment=classifier_mnist data.root=$DATA unet.base_channels=16 trainer.max_steps=1500 seed=1 \
    trainer.val_every_n_steps=500 trainer.enable_progress_bar=false run_dir=runs/classifier_mnist/judge

JUDGE=runs/classifier_mnist/judge/checkpoints/last.ckpt
EVAL="n=500 features=domain domain_classifier=$JUDGE eval_classifier=$JUDGE out=$OUT"
# S = 1000 left out: 6 rows x 1000 steps x 500 samples is about 6 h on one core.
genlab table ddim_steps_eta ckpt=runs/ddpm_mnist/cpu/checkpoints/last.ckpt "values=[10,20,50,100]" $EVAL
genlab table cfg_guidance ckpt=runs/cfg_mnist/cpu/checkpoints/last.ckpt $EVAL
genlab table classifier_scale ckpt=runs/ddpm_mnist/cpu/checkpoints/last.ckpt \
    classifier=runs/classifier_mnist/cpu/checkpoints/last.ckpt $EVAL

# Fast samplers (this stop): FID against network evaluations for DDIM and the ODE solvers on the same DDPM, and the
# same latents decoded at several step counts. The DDPM and the judge were trained again with the commands above
# (the code of this stop; both jobs OMP_NUM_THREADS=1), so this table's numbers are not those of the tables above.
genlab table nfe_sweep ckpt=runs/ddpm_mnist/cpu/checkpoints/last.ckpt $EVAL
genlab sample ckpt=runs/ddpm_mnist/cpu/checkpoints/last.ckpt sampler=unipc spacing=uniform steps=3,5,10,20,50 n=10 \
    out=$OUT/nfe_consistency_unipc.png
genlab sample ckpt=runs/ddpm_mnist/cpu/checkpoints/last.ckpt sampler=ddim steps=3,5,10,20,50 n=10 \
    out=$OUT/nfe_consistency_ddim.png

# Guidance methods (issue 25) on the 20-minute recipes. The judge, ddpm_mnist_20min and the flow runs are those of
# benchmarks/results/families.md (runs/fam); the two CFG runs were trained side by side, OMP_NUM_THREADS=1 each.
FAM_JUDGE=runs/fam/judge/checkpoints/last.ckpt
for P in 1 2; do
  OMP_NUM_THREADS=1 genlab train experiment=cfg_mnist_20min data.root=$DATA model.p_uncond=0.$P \
      trainer.enable_progress_bar=false run_dir=runs/fam/cfg_p0$P &
done; wait
genlab table cfg_label_dropout ckpts.p01=runs/fam/cfg_p01/checkpoints/last.ckpt \
    ckpts.p02=runs/fam/cfg_p02/checkpoints/last.ckpt features=domain domain_classifier=$FAM_JUDGE out=$OUT
genlab table guidance_methods ckpts.cfg=runs/fam/cfg_p01/checkpoints/last.ckpt \
    ckpts.ddpm=runs/fam/ddpm/checkpoints/last.ckpt features=domain domain_classifier=$FAM_JUDGE out=$OUT
