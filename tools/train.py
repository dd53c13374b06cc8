"""Train with any mmengine config (`vimamba.downstream.mm.runner.train_main`); last metrics: <work dir>/metrics.json.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    torchrun --nproc-per-node N tools/train.py CONFIG --launcher pytorch      (or tools/dist_train.sh CONFIG N)"""
from vimamba.downstream.mm.runner import train_main

if __name__ == '__main__':
    train_main()
