#!/usr/bin/env bash
# Launch PAM training (scripts/train.py, a Hydra app) with torchrun.
#
# One node, every visible GPU (or NPROC_PER_NODE of them):
#   scripts/launch_torchrun.sh model=pam_1.5b data=pam_release stage=stage2 stage.max_steps=1000
#
# Several nodes: run the same command on every node, with the same MASTER_ADDR (a host that all
# nodes reach; it serves the c10d rendezvous) and MASTER_PORT. Node ranks are assigned at rendezvous.
#   NNODES=2 MASTER_ADDR=node-001 MASTER_PORT=29500 scripts/launch_torchrun.sh model=pam_1.5b data=pam_release stage=stage2
#
# Environment:
#   NPROC_PER_NODE   processes per node (default: number of GPUs from nvidia-smi, else 1)
#   NNODES           number of nodes (default 1)
#   MASTER_ADDR      rendezvous host; when set, c10d rendezvous is used (required if NNODES > 1)
#   MASTER_PORT      rendezvous port (default 29500)
#   RDZV_ID          rendezvous id shared by the nodes of one job (default pam)
#   PAM_TRAIN_SCRIPT training script (default: scripts/train.py beside this file)
set -euo pipefail

train_script="${PAM_TRAIN_SCRIPT:-$(dirname "$0")/train.py}"
nnodes="${NNODES:-1}"
if [[ -n "${NPROC_PER_NODE:-}" ]]; then
  nproc="$NPROC_PER_NODE"
elif command -v nvidia-smi >/dev/null 2>&1; then
  nproc="$(nvidia-smi -L | grep -c '^GPU' || true)"
  [[ "$nproc" -ge 1 ]] || nproc=1
else
  nproc=1
fi

if [[ -n "${MASTER_ADDR:-}" ]]; then
  exec torchrun --nnodes "$nnodes" --nproc-per-node "$nproc" \
    --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:${MASTER_PORT:-29500}" --rdzv-id "${RDZV_ID:-pam}" \
    "$train_script" "$@"
elif [[ "$nnodes" -gt 1 ]]; then
  echo "launch_torchrun.sh: NNODES=$nnodes needs MASTER_ADDR (and MASTER_PORT) for the rendezvous" >&2
  exit 2
else
  exec torchrun --standalone --nnodes 1 --nproc-per-node "$nproc" "$train_script" "$@"
fi
