# MaIR-T lightweight SR x2: the MaIR-S x2 recipe with the MaIR-T network (d_state 1).
_base_ = ['./mair_light_s_x2_div2k.py']

model = dict(generator=dict(model_name='mair_light_t_x2'))
