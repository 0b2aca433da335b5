#!/usr/bin/env bash
# DDP with torchrun, on one machine or several. Lightning reads torchrun's variables (RANK, WORLD_SIZE, ...).
#
#   one machine, all its GPUs:
#     experiments/launch/torchrun.sh experiment=cfg_cifar10 [key=value ...]
#   two machines: run on each, with the same RUN_DIR on a shared file system and MASTER_ADDR of node 0:
#     NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 RUN_DIR=/shared/runs/cifar experiments/launch/torchrun.sh experiment=...
#     NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 RUN_DIR=/shared/runs/cifar experiments/launch/torchrun.sh experiment=...
#
# Relaunching the same command continues the run (resume=auto).
set -euo pipefail
cd "$(dirname "$0")/../.."
make install >/dev/null  # creates .venv on first use

NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
GPUS="${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
if [ "${GPUS}" -lt 1 ]; then
  echo "torchrun.sh: no GPU found; set GPUS=N (or use trainer.accelerator=cpu with GPUS=N processes)" >&2
  exit 2
fi
if [ "${NNODES}" -gt 1 ] && [ -z "${RUN_DIR:-}" ]; then
  echo "torchrun.sh: with NNODES>1 set RUN_DIR to one folder on a file system all nodes share" >&2
  exit 2
fi
# Every process must write to the same run folder: pick it here, once, not in each process.
RUN_DIR="${RUN_DIR:-runs/torchrun/$(date +%Y%m%d-%H%M%S)}"

exec .venv/bin/torchrun \
  --nnodes="${NNODES}" --node_rank="${NODE_RANK}" --nproc_per_node="${GPUS}" \
  --master_addr="${MASTER_ADDR}" --master_port="${MASTER_PORT}" \
  -m genlab train "$@" \
  trainer.devices="${GPUS}" \
  trainer.num_nodes="${NNODES}" \
  trainer.strategy=ddp \
  run_dir="${RUN_DIR}" \
  resume=auto
