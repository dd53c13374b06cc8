# AWMambaBCD-T on SYSU-CD
# (AtrousMamba, arXiv 2507.16172; details PROPOSED where the paper is silent: docs/families.md#atrousmamba).
# ChangeMamba's recipe: AdamW 1e-4 (wd 5e-4), batch 16, 256 crops, 320k iterations, constant rate.
#   python tools/train.py configs/change/awmamba_bcd_tiny_sysu_cd.py
#   python tools/test.py configs/change/awmamba_bcd_tiny_sysu_cd.py work_dirs/<name>/best_*.pth
_base_ = ['./_base_/runtime.py', './_base_/datasets/sysu_cd.py', './_base_/models/awmamba_bcd_tiny.py']
