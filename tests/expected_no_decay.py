"""The parameters of every family's test model that the optimisers must not decay beyond timm's 1-D rule, written
out: each SSM mixer's A_log and D, and the position embeddings and class / register tokens."""

_VIM = tuple(f'blocks.{i}.mixer.' for i in range(4))
_HIERARCHICAL = ('stages.0.blocks.0.mixer.', 'stages.0.blocks.1.mixer.', 'stages.1.blocks.0.mixer.',
                 'stages.2.blocks.0.mixer.', 'stages.3.blocks.0.mixer.')

# test model -> (prefixes of its SSM mixers, its embeddings and tokens)
NO_DECAY = {
    'test_vim': (_VIM, ('pos_embed', 'cls_token')),
    'test_lbvim': (_VIM, ('pos_embed',)),
    'test_shufflemamba': (_VIM, ('pos_embed', 'cls_token')),
    'test_shufflemamba_reg': (_VIM, ('pos_embed', 'reg_pos_embed', 'reg_token')),
    'test_vmamba': (_HIERARCHICAL, ()),
    'test_atrousmamba': (_HIERARCHICAL, ()),
    'test_mobilemamba': (tuple(f'stages.{i}.blocks.0.mixer.global_branch.ssm.' for i in range(3)), ()),
    'test_mair': (('groups.0.blocks.0.mixer.', 'groups.0.blocks.1.mixer.'), ()),
}


def expected_no_decay(name: str, prefix: str = '') -> set:
    """The names of `name`'s A_log, D, embeddings and tokens, each with `prefix`."""
    mixers, tokens = NO_DECAY[name]
    return {prefix + m + leaf for m in mixers for leaf in ('A_log', 'D')} | {prefix + t for t in tokens}
