#!/usr/bin/env bash
# Train on N processes of this machine (one per GPU): tools/dist_train.sh CONFIG N [train.py options...]
# Several machines: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT as torchrun reads them.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_PROCESSES [tools/train.py options...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node-rank="${NODE_RANK:-0}" \
    --master-addr="${MASTER_ADDR:-127.0.0.1}" --master-port="${MASTER_PORT:-29500}" \
    --nproc-per-node="$NPROC" \
    "$HERE/train.py" "$CONFIG" --launcher pytorch "$@"
