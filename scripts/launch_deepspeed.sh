#!/usr/bin/env bash
# Launch PAM training (scripts/train.py, a Hydra app) with the DeepSpeed launcher.
# The ZeRO config is chosen by the training config (trainer.deepspeed_config), not here.
#
# One node, every visible GPU (or NUM_GPUS of them):
#   scripts/launch_deepspeed.sh model=pam_1.5b data=pam_release stage=stage2 trainer.engine=deepspeed \
#       trainer.deepspeed_config=configs/deepspeed/zero2.json
#
# Several nodes: list them in a hostfile (see scripts/hostfile.example) and run once, on the first
# host. The launcher starts the other nodes over passwordless ssh (pdsh); environment variables to
# forward to them (NCCL_*, PYTHONPATH, ...) go in ~/.deepspeed_env or ./.deepspeed_env, one NAME=value a line.
#   HOSTFILE=scripts/hostfile MASTER_ADDR=node-001 scripts/launch_deepspeed.sh model=pam_1.5b data=pam_release stage=stage2
#
# Environment:
#   HOSTFILE         MPI-style hostfile ("host slots=N" lines); unset: this node only
#   MASTER_ADDR      address of the first host (required with HOSTFILE)
#   MASTER_PORT      (default 29500)
#   NUM_GPUS         GPUs per node (default: all)
#   PAM_TRAIN_SCRIPT training script (default: scripts/train.py beside this file)
set -euo pipefail

train_script="${PAM_TRAIN_SCRIPT:-$(dirname "$0")/train.py}"
# --no_local_rank: a Hydra app rejects the --local_rank=N argument; ranks come from the environment.
args=(--master_port "${MASTER_PORT:-29500}" --no_local_rank)
if [[ -n "${NUM_GPUS:-}" ]]; then
  args+=(--num_gpus "$NUM_GPUS")
fi
if [[ -n "${HOSTFILE:-}" ]]; then
  if [[ ! -f "$HOSTFILE" ]]; then
    echo "launch_deepspeed.sh: hostfile $HOSTFILE does not exist" >&2
    exit 2
  fi
  args+=(--hostfile "$HOSTFILE" --master_addr "${MASTER_ADDR:?set MASTER_ADDR to the first host in $HOSTFILE}")
fi

exec deepspeed "${args[@]}" "$train_script" "$@"
