# AWMambaBCD-B on LEVIR-CD
# (AtrousMamba, arXiv 2507.16172; details PROPOSED where the paper is silent: docs/families.md#atrousmamba).
# ChangeMamba's recipe: AdamW 1e-4 (wd 5e-4), batch 16, 256 crops, 320k iterations, constant rate.
#   python tools/train.py configs/change/awmamba_bcd_base_levir_cd.py
#   python tools/test.py configs/change/awmamba_bcd_base_levir_cd.py work_dirs/<name>/best_*.pth
_base_ = ['./_base_/runtime.py', './_base_/datasets/levir_cd.py', './_base_/models/awmamba_bcd_tiny.py']

# 92,399,874 parameters (= ChangeMamba MambaBCD-B); start from the VMamba v2 base ImageNet weights.
model = dict(encoder=dict(
    model_name='atrousmamba_base',
    model_kwargs=dict(depths=(2, 2, 15, 2), drop_path_rate=0.6)))
