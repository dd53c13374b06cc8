# AWMambaSCD-T (PROPOSED, docs/families.md#atrousmamba): AWMambaBCD-T plus two semantic decoders and one shared semantic
# classifier; ChangeMamba's SCD loss. 37,125,641 parameters with 7 classes (= ChangeMamba MambaSCD-T).
model = dict(
    type='SemanticChangeDetector',
    num_classes=7,
    encoder=dict(
        model_name='atrousmamba_tiny',
        model_kwargs=dict(depths=(2, 2, 4, 2), drop_path_rate=0.2, window_size=8, atrous_rates=(1, 2, 4)),
        checkpoint=None,
        strict=False,
    ),
    decoder=dict(width=128, drop_path=0.1, window_size=8, decoder_atrous_rates=(1, 2, 4)),
    lovasz_weight=0.75,
    test_cfg=dict(mode='whole'),
)
