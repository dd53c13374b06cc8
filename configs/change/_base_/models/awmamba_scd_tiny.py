# AWMambaSCD-T (PROPOSED, docs/families.md#atrousmamba): AWMambaBCD-T plus two semantic decoders and one shared semantic
# classifier; ChangeMamba's SCD loss. 37,125,641 parameters with 7 classes (= ChangeMamba MambaSCD-T).
_base_ = ['./awmamba_bcd_tiny.py']

model = dict(type='SemanticChangeDetector', num_classes=7)
