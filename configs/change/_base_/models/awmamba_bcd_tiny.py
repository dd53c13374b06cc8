# AWMambaBCD-T (PROPOSED, docs/families.md#atrousmamba): siamese AtrousMamba-T encoder with ChangeMamba's tiny depths
# (2, 2, 4, 2), ChangeMamba's change decoder (width 128, drop path 0.1) with atrous-window VSS blocks, CE + 0.75 Lovasz.
# 32,613,506 parameters (= ChangeMamba MambaBCD-T). Start from VMamba ImageNet weights by setting encoder.checkpoint
# to a VMamba v2 tiny checkpoint (ChangeMamba uses its 'vssm_tiny_0230' file); strict=False keeps what the
# shallower encoder shares with it (ChangeMamba loads the same way).
model = dict(
    type='BinaryChangeDetector',
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
