"""Scan-pattern library: permutation and inverse properties, golden tables, caching and errors."""
import dataclasses
import hashlib

import pytest
import torch

from vimamba.scans import (
    AtrousPhaseOuterScan, AtrousWindowRateScan, AtrousWindowScan, BidirectionalScan, CrossScan,
    LocallyBidirectionalScan, MultiRateAtrousScan, NestedSScan, RasterScan, ScanOrder, ShuffleScan,
    atrous_block_scans, clear_cache, get_pattern, list_patterns,
)
from vimamba.ops import selective_scan

GRIDS = [(1, 1), (1, 2), (1, 7), (1, 197), (2, 1), (3, 5), (4, 6), (5, 4), (7, 7), (8, 8), (9, 16), (14, 14),
         (16, 24), (17, 3)]

PATTERNS = [
    RasterScan(), BidirectionalScan(), CrossScan(),
    LocallyBidirectionalScan(), LocallyBidirectionalScan(window=3, reverse=True),
    AtrousWindowScan(), AtrousWindowScan(window=2, rate=2), AtrousWindowScan(window=3, rate=4),
    AtrousWindowScan(window=1, rate=1), AtrousPhaseOuterScan(window=2, rate=3),
    AtrousWindowRateScan(window=4, rate=4), AtrousWindowRateScan(window=2, rate=3, order_mode="phase"),
    MultiRateAtrousScan(window=2, rates=(1, 2, 3)),
    NestedSScan(), NestedSScan(scan_len=4, shift=2), NestedSScan(scan_len=3, shift=1), NestedSScan(scan_len=1),
    ShuffleScan(),
]


def _check_order(order, k, length):
    assert isinstance(order, ScanOrder)
    assert order.index.shape == (k, length) and order.inverse.shape == (k, length)
    assert order.index.dtype == torch.long and order.inverse.dtype == torch.long
    steps = torch.arange(length).expand(k, length)
    assert torch.equal(order.index.sort(dim=1).values, steps), "every direction must visit each token once"
    assert torch.equal(order.inverse.gather(1, order.index), steps)
    # Scan a grid of values through the index, write it back through the inverse: the grid comes back.
    grid = torch.randn(length)
    scanned = grid[order.index]
    assert torch.equal(scanned.gather(1, order.inverse), grid.expand(k, length))


# ---------------------------------------------------------------------------------------------- properties

@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
def test_every_order_is_a_permutation_and_inverse_restores(pattern):
    for h, w in GRIDS:
        _check_order(pattern.order(h, w), pattern.num_directions, h * w)


def test_shuffle_training_orders_are_permutations():
    for h, w in GRIDS:
        _check_order(ShuffleScan().order(h, w, training=True), 1, h * w)


def test_registry_names_and_defaults():
    assert list_patterns() == sorted(["raster", "bidirectional", "cross", "locally_bidirectional", "atrous_window",
                                      "atrous_phase_outer", "atrous_window_rate", "atrous_window_multirate",
                                      "nested_s", "shuffle"])
    expected_k = {"raster": 1, "bidirectional": 2, "cross": 4, "locally_bidirectional": 1, "atrous_window": 4,
                  "atrous_phase_outer": 4, "atrous_window_rate": 4, "atrous_window_multirate": 12,
                  "nested_s": 4, "shuffle": 1}
    for name in list_patterns():
        pattern = get_pattern(name)
        assert pattern.name == name
        assert pattern.num_directions == expected_k[name]
        for h, w in [(8, 8), (16, 24), (64, 64), (1, 8)]:  # defaults fit grids whose sides are multiples of 8
            assert pattern.order(h, w).index.shape == (expected_k[name], h * w)
    assert get_pattern("nested_s") == NestedSScan(scan_len=8, shift=0)
    assert get_pattern("atrous_window") == AtrousWindowScan(window=8, rate=1)
    assert get_pattern("atrous_window_rate", rate=2) == AtrousWindowRateScan(8, 2, "clip", "window")
    assert get_pattern("atrous_window_multirate") == MultiRateAtrousScan(8, (1, 2, 4), "clip", "window")
    assert get_pattern("locally_bidirectional") == LocallyBidirectionalScan(window=None, reverse=False)
    built = NestedSScan(scan_len=4)
    assert get_pattern(built) is built


def test_patterns_are_frozen_and_hashable():
    pattern = NestedSScan(scan_len=4, shift=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pattern.shift = 0
    assert hash(pattern) == hash(NestedSScan(scan_len=4, shift=2))
    assert RasterScan() != BidirectionalScan()


# ------------------------------------------------------------------------------------- whole-image patterns

def test_raster_bidirectional_cross_tables():
    assert RasterScan().order(2, 3).index.tolist() == [[0, 1, 2, 3, 4, 5]]
    assert BidirectionalScan().order(2, 3).index.tolist() == [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]]
    # k0 raster, k1 column-major (n % H) * W + n // H, k2 / k3 their reverses.
    h, w = 3, 5
    n = torch.arange(h * w)
    column_major = (n % h) * w + n // h
    index = CrossScan().order(h, w).index
    assert torch.equal(index[0], n)
    assert torch.equal(index[1], column_major)
    assert torch.equal(index[2], n.flip(0))
    assert torch.equal(index[3], column_major.flip(0))
    assert CrossScan().order(2, 3).index[1].tolist() == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize("length", [1, 2, 7, 197, 198])
def test_one_dimensional_grids(length):
    # Vim-style families scan (1, L) grids, L counting cls tokens (odd L, L = 1).
    n = torch.arange(length)
    assert torch.equal(RasterScan().order(1, length).index[0], n)
    assert torch.equal(BidirectionalScan().order(1, length).index[1], n.flip(0))
    assert torch.equal(LocallyBidirectionalScan().order(1, length).index[0], n)
    assert torch.equal(LocallyBidirectionalScan(reverse=True).order(1, length).index[0], n.flip(0))
    assert torch.equal(ShuffleScan().order(1, length).index[0], n)
    assert ShuffleScan().order(1, length, training=True).index.shape == (1, length)


# -------------------------------------------------------------------------------- locally bi-directional

@pytest.mark.parametrize("length,window", [(1, 4), (128, 4), (129, 8), (196, 8), (256, 8), (257, 16), (512, 16),
                                           (1024, 16), (4096, 16)])
def test_locally_bidirectional_window_rule(length, window):
    assert LocallyBidirectionalScan().order(1, length).local_window == window
    assert LocallyBidirectionalScan(reverse=True).order(1, length).local_window == window
    side = int(length ** 0.5)
    if side * side == length:  # the rule counts tokens, whatever the grid shape
        assert LocallyBidirectionalScan().order(side, side).local_window == window


def test_locally_bidirectional_given_window_and_reverse():
    order = LocallyBidirectionalScan(window=5, reverse=True).order(14, 14)
    assert order.local_window == 5
    assert torch.equal(order.index[0], torch.arange(196).flip(0))
    assert LocallyBidirectionalScan(window=500).order(14, 14).local_window == 500
    # Every other pattern asks for a plain scan.
    for pattern in PATTERNS:
        if not isinstance(pattern, LocallyBidirectionalScan):
            assert pattern.order(8, 8).local_window == 0


# ------------------------------------------------------------------------------------------- nested S (NSS)

def _nss_closed_form(h, w, s, o):
    """The closed form of docs/families.md#mair, written out with plain loops."""
    if o > 0 and w < o:
        return list(range(h * w))
    bounds = [(0, o)] if o > 0 else []
    c = o
    while c < w:
        bounds.append((c, min(c + s, w)))
        c += s
    out = []
    for m, (c0, c1) in enumerate(bounds):
        rows = range(h) if m % 2 == 0 else range(h - 1, -1, -1)
        for t, r in enumerate(rows):
            cols = range(c0, c1) if t % 2 == 0 else range(c1 - 1, c0 - 1, -1)
            out.extend(r * w + col for col in cols)
    return out


def _nss_reference(h, w, s, o):
    length = h * w
    k0 = _nss_closed_form(h, w, s, o)
    k2 = [(t % h) * w + t // h for t in _nss_closed_form(w, h, s, o)]
    return [k0, [length - 1 - v for v in k0], k2, [length - 1 - v for v in k2]]


def test_nested_s_worked_example():
    index = NestedSScan(scan_len=4, shift=0).order(4, 6).index.tolist()
    assert index[0] == [0, 1, 2, 3, 9, 8, 7, 6, 12, 13, 14, 15, 21, 20, 19, 18, 22, 23, 17, 16, 10, 11, 5, 4]
    assert index[1] == [23, 22, 21, 20, 14, 15, 16, 17, 11, 10, 9, 8, 2, 3, 4, 5, 1, 0, 6, 7, 13, 12, 18, 19]
    assert index[2] == [0, 6, 12, 18, 19, 13, 7, 1, 2, 8, 14, 20, 21, 15, 9, 3, 4, 10, 16, 22, 23, 17, 11, 5]
    assert NestedSScan(scan_len=4, shift=2).order(4, 6).index[0].tolist() == [
        0, 1, 7, 6, 12, 13, 19, 18, 20, 21, 22, 23, 17, 16, 15, 14, 8, 9, 10, 11, 5, 4, 3, 2]


@pytest.mark.parametrize("scan_len,shift", [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0), (4, 2),
                                            (8, 0), (8, 4)])
def test_nested_s_matches_closed_form(scan_len, shift):
    pattern = NestedSScan(scan_len=scan_len, shift=shift)
    for h in range(1, 14):
        for w in range(1, 14):
            assert pattern.order(h, w).index.tolist() == _nss_reference(h, w, scan_len, shift), (h, w)
    for h, w in [(32, 48), (48, 32), (64, 64)]:
        assert pattern.order(h, w).index.tolist() == _nss_reference(h, w, scan_len, shift), (h, w)


def test_nested_s_degenerates_to_raster_when_narrower_than_shift():
    # MaIR quirk kept on purpose: the scanned width is smaller than the shift.
    index = NestedSScan(scan_len=8, shift=4).order(6, 3).index
    assert torch.equal(index[0], torch.arange(18))
    assert torch.equal(index[1], torch.arange(18).flip(0))
    # The transposed scan is 6 wide, wider than the shift: it keeps its stripes.
    assert index[2].tolist() == _nss_reference(6, 3, 8, 4)[2]
    assert not torch.equal(index[2], CrossScan().order(6, 3).index[1])


@pytest.mark.parametrize("scan_len,shift", [(4, 0), (4, 2), (8, 4), (3, 1)])
@pytest.mark.parametrize("h,w", [(7, 13), (8, 8), (12, 10), (5, 17)])
def test_nested_s_steps_within_a_stripe_are_4_neighbours(scan_len, shift, h, w):
    index = NestedSScan(scan_len=scan_len, shift=shift).order(h, w).index
    rows, cols = index // w, index % w

    def stripe_of(coord):  # stripe number of a column (k0, k1) or a row (k2, k3)
        return torch.where(coord < shift, -1, (coord - shift) // scan_len) if shift else coord // scan_len

    for k in range(4):
        # k1 and k3 scan the 180-degree rotated image, so their stripes are counted from the far side.
        across = cols[k] if k < 2 else rows[k]
        if k in (1, 3):
            across = (w if k == 1 else h) - 1 - across
        stripe = stripe_of(across)
        same = stripe[1:] == stripe[:-1]
        step = (rows[k, 1:] - rows[k, :-1]).abs() + (cols[k, 1:] - cols[k, :-1]).abs()
        assert bool((step[same] == 1).all()), f"direction {k}: a step inside a stripe is not a 4-neighbour"
        # Stripes are visited one after another, each exactly once.
        changes = int((~same).sum())
        assert changes == len(torch.unique(stripe)) - 1


# ------------------------------------------------------------------------------------------- atrous window

def _atrous_reference(h, w, window, rate):
    """The loops of docs/families.md#atrousmamba."""
    span = rate * window
    out = []
    for bi in range(-(-h // span)):
        for bj in range(-(-w // span)):
            for p in range(rate):
                for q in range(rate):
                    for a in range(window):
                        for b in range(window):
                            i, j = bi * span + p + rate * a, bj * span + q + rate * b
                            if i < h and j < w:
                                out.append(i * w + j)
    return out


def test_atrous_window_golden_examples():
    index = AtrousWindowScan(window=2, rate=2).order(4, 4).index.tolist()
    assert index[0] == [0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15]
    # The transposed construction is our second direction: we keep cross2d's order.
    assert index[1] == [0, 8, 2, 10, 4, 12, 6, 14, 1, 9, 3, 11, 5, 13, 7, 15]
    assert index[2] == index[0][::-1]
    assert index[3] == index[1][::-1]
    assert AtrousWindowScan(window=2, rate=1).order(4, 6).index[0].tolist()[:16] == [
        0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11, 12, 13, 18, 19]


@pytest.mark.parametrize("window", [1, 2, 3, 7, 8])
@pytest.mark.parametrize("rate", [1, 2, 3, 4])
def test_atrous_window_matches_spec_loops(window, rate):
    pattern = AtrousWindowScan(window=window, rate=rate)
    for h in range(1, 13):
        for w in range(1, 13):
            index = pattern.order(h, w).index
            k0 = _atrous_reference(h, w, window, rate)
            k2 = [(t % h) * w + t // h for t in _atrous_reference(w, h, window, rate)]
            assert index.tolist() == [k0, k2, k0[::-1], k2[::-1]], (h, w)


# sha256 (first 16 hex digits) of the int64 index of each grid, taken from the patterns' first implementation
# in the AtrousMamba model file: moving them into the library must not change a single order.
_ATROUS_DIGESTS = {
    ("atrous_phase_outer", (("window", 2), ("rate", 2))): (
        "389996af60d71289", "9215fe155f1cf63d", "efad564a69e53d48", "ce02f86a610bf396"),
    ("atrous_phase_outer", (("window", 3), ("rate", 2))): (
        "1b6d3bf9f26c6060", "717c1e0beef69e9d", "e327bb9e75821fdc", "8affac857c6f5e34"),
    ("atrous_window_rate", (("window", 4), ("rate", 4))): (
        "30d6094f55fd681d", "1bd70df4bcaccbec", "4096170bdaab4057", "985b7baf027f0d3a"),
    ("atrous_window_rate", (("window", 2), ("rate", 3), ("order_mode", "phase"))): (
        "a27d613d4224a4be", "cf21415acd4491c4", "f8b27eb093ea4658", "d9e6bf94b29ecb61"),
    ("atrous_window_multirate", (("window", 2), ("rates", (1, 2, 3)))): (
        "37ea28661babbc7c", "ac2799009c2bbcf8", "a1542f9826d620ea", "e77b61edf28859fe"),
    ("atrous_window_multirate", (("window", 2), ("rates", (1, 4)), ("order_mode", "phase"))): (
        "e0079a6aad9374fe", "105491edfa61d035", "425bacad4fb68f0e", "fd09dbb3c9a8b037"),
}


@pytest.mark.parametrize("name,params", list(_ATROUS_DIGESTS), ids=str)
def test_atrous_patterns_keep_their_orders(name, params):
    pattern = get_pattern(name, **dict(params))
    digests = tuple(hashlib.sha256(pattern.order(h, w).index.numpy().tobytes()).hexdigest()[:16]
                    for h, w in [(6, 4), (8, 8), (7, 10), (16, 32)])
    assert digests == _ATROUS_DIGESTS[name, params]


def test_atrous_rate_patterns_pick_the_clipped_fixed_pattern():
    # On 8x8, rate 4 x window 4 spans 16 cells: clipped to rate 2.
    assert AtrousWindowRateScan(window=4, rate=4).pattern_for(8, 8) == AtrousWindowScan(window=4, rate=2)
    assert AtrousWindowRateScan(4, 4, order_mode="phase").pattern_for(8, 8) == AtrousPhaseOuterScan(4, 2)
    multi = MultiRateAtrousScan(window=2, rates=(1, 3)).order(6, 6).index
    assert torch.equal(multi, torch.cat([AtrousWindowScan(2, 1).order(6, 6).index,
                                         AtrousWindowScan(2, 3).order(6, 6).index]))


def test_atrous_block_scans_schedule():
    """The one rate schedule of AtrousMamba's stages and the change-detection decoders."""
    stages = atrous_block_scans("atrous_window", (3, 2), window=4, rates=((1, 2), (4,)))
    assert [[p.rate for p in stage] for stage in stages] == [[1, 2, 1], [4, 4]]  # rates cycle inside a stage
    assert stages[0][0] == AtrousWindowRateScan(4, 1, "clip", "window")
    assert [[p.rate for p in s] for s in atrous_block_scans("atrous_window", (2, 1), rates=(1, 2, 4))] == [[1, 2], [1]]
    parallel = atrous_block_scans("atrous_window", (2,), window=2, rates=(1, 3), order="phase", mode="parallel")
    assert parallel == [[MultiRateAtrousScan(2, (1, 3), "clip", "phase")] * 2]
    assert atrous_block_scans("cross", (1, 2)) == [[CrossScan()], [CrossScan(), CrossScan()]]
    with pytest.raises(ValueError, match=r"Decoder: decoder_atrous_rates=\(\) is empty"):
        atrous_block_scans("atrous_window", (2,), rates=(), owner="Decoder", rates_arg="decoder_atrous_rates")
    with pytest.raises(ValueError, match=r"needs one non-empty tuple per stage \(2"):
        atrous_block_scans("atrous_window", (1, 1), rates=((1,), (2,), (4,)))
    for arg, value in [("rate_overflow", "pad"), ("order", "diagonal"), ("mode", "aspp")]:
        with pytest.raises(ValueError, match=f"{value!r}"):
            atrous_block_scans("atrous_window", (1,), **{arg: value})


@pytest.mark.parametrize("window,rate,h,w", [(2, 2, 8, 8), (3, 2, 12, 18), (4, 1, 8, 12), (2, 3, 12, 6),
                                             (8, 2, 32, 16)])
def test_atrous_windows_group_tokens(window, rate, h, w):
    # Grids that are whole multiples of the span: every consecutive run of window*window tokens is one atrous
    # window, i.e. a window x window lattice with spacing `rate` inside one span x span block.
    span = rate * window
    index = AtrousWindowScan(window=window, rate=rate).order(h, w).index
    for k in (0, 1):
        runs = index[k].view(-1, window * window)
        rows, cols = runs // w, runs % w
        for run_rows, run_cols in zip(rows, cols):
            for coord in (run_rows, run_cols):
                values = torch.unique(coord)
                assert len(values) == window
                assert bool((values.diff() == rate).all())
                assert len(torch.unique(coord // span)) == 1
        # Inside a run, consecutive tokens are `rate` apart along the direction's fast axis.
        fast = cols if k == 0 else rows
        slow = rows if k == 0 else cols
        inner = (slow[:, 1:] == slow[:, :-1])
        assert bool(((fast[:, 1:] - fast[:, :-1])[inner] == rate).all())


def test_atrous_window_with_one_window_is_cross_scan():
    # r = 1 and w >= max(H, W): the whole grid is one window, in cross2d's direction order.
    for h, w in [(5, 7), (8, 8), (1, 6)]:
        atrous = AtrousWindowScan(window=8, rate=1).order(h, w).index
        assert torch.equal(atrous, CrossScan().order(h, w).index)


# --------------------------------------------------------------------------------------------------- shuffle

def test_shuffle_is_identity_in_eval_and_fresh_in_training():
    pattern = ShuffleScan()
    eval_order = pattern.order(8, 8)
    assert torch.equal(eval_order.index[0], torch.arange(64))
    assert pattern.order(8, 8, training=False) is eval_order
    first = pattern.order(8, 8, training=True)
    second = pattern.order(8, 8, training=True)
    assert first is not second
    assert not torch.equal(first.index, second.index)
    assert not torch.equal(first.index[0], torch.arange(64))
    # A generator makes it reproducible.
    one = pattern.order(8, 8, training=True, generator=torch.Generator().manual_seed(3))
    two = pattern.order(8, 8, training=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one.index, two.index)
    # Deterministic patterns ignore the training flag.
    assert RasterScan().order(8, 8, training=True) is RasterScan().order(8, 8)


# ----------------------------------------------------------------------------------------------------- cache

def test_order_is_cached_per_grid_params_and_device():
    order = NestedSScan(scan_len=4, shift=2).order(12, 16)
    assert get_pattern("nested_s", scan_len=4, shift=2).order(12, 16) is order
    assert NestedSScan(scan_len=4, shift=2).order(12, 16, "cpu") is order
    assert NestedSScan(scan_len=4, shift=2).order(12, 16, torch.device("cpu")) is order
    assert NestedSScan(scan_len=4, shift=0).order(12, 16) is not order
    assert NestedSScan(scan_len=4, shift=2).order(16, 12) is not order
    # Different pattern classes with equal (empty) parameters must not share entries.
    assert RasterScan().order(4, 4) is not ShuffleScan().order(4, 4)
    assert RasterScan().order(4, 4).num_directions == 1 and BidirectionalScan().order(4, 4).num_directions == 2


@pytest.mark.gpu
def test_order_on_cuda():
    order = CrossScan().order(8, 8, "cuda")
    assert order.index.is_cuda and order.inverse.is_cuda
    assert CrossScan().order(8, 8, torch.device("cuda", torch.cuda.current_device())) is order
    assert torch.equal(order.index.cpu(), CrossScan().order(8, 8).index)
    assert ShuffleScan().order(8, 8, "cuda", training=True).index.is_cuda


# ---------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("make,argument", [
    (lambda: NestedSScan(scan_len=0), "scan_len"),
    (lambda: NestedSScan(scan_len=2.5), "scan_len"),
    (lambda: NestedSScan(scan_len=4, shift=4), "shift"),
    (lambda: NestedSScan(scan_len=4, shift=-1), "shift"),
    (lambda: AtrousWindowScan(window=0), "window"),
    (lambda: AtrousWindowScan(rate=-2), "rate"),
    (lambda: AtrousWindowScan(rate=True), "rate"),
    (lambda: LocallyBidirectionalScan(window=0), "window"),
    (lambda: LocallyBidirectionalScan(window="8"), "window"),
    (lambda: LocallyBidirectionalScan(reverse=1), "reverse"),
])
def test_bad_parameters_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument) as info:
        make()
    assert "got" in str(info.value)


@pytest.mark.parametrize("pattern", [RasterScan(), NestedSScan(), AtrousWindowScan(), ShuffleScan()], ids=repr)
@pytest.mark.parametrize("h,w", [(0, 4), (4, -1), (2.5, 4), (True, 4)])
def test_bad_grids_name_the_grid(pattern, h, w):
    with pytest.raises(ValueError, match=r"grid \(h="):
        pattern.order(h, w)
    if isinstance(pattern, ShuffleScan):
        with pytest.raises(ValueError, match=r"grid \(h="):
            pattern.order(h, w, training=True)


def test_get_pattern_errors():
    with pytest.raises(ValueError, match="nested_s") as info:
        get_pattern("nss")
    assert "'nss'" in str(info.value) and "atrous_window" in str(info.value)
    with pytest.raises(TypeError, match="stripe"):
        get_pattern("nested_s", stripe=4)
    with pytest.raises(TypeError, match="window"):
        get_pattern("cross", window=4)
    with pytest.raises(TypeError):
        get_pattern(NestedSScan(), shift=2)


def test_orders_first_built_under_inference_mode_serve_training():
    clear_cache()
    with torch.inference_mode():
        order = get_pattern("bidirectional").order(3, 5)
    assert not order.index.is_inference() and not order.inverse.is_inference()
    u = torch.randn(1, 2, 4, 15, requires_grad=True)
    y = selective_scan(u, torch.randn(1, 2, 4, 15), -torch.rand(2, 4, 3), torch.randn(1, 2, 3, 15),
                       torch.randn(1, 2, 3, 15), order=get_pattern("bidirectional").order(3, 5))
    y.sum().backward()
    assert u.grad is not None


# ---------------------------------------------------------------------------------------------- from_index

@pytest.mark.parametrize("index,message", [
    ([1, 0, 2, 2, 4, 5, 6, 7], r"row 0 is not a permutation of 0\.\.7 \(tokens never visited: \[3\]; "
                               r"visited more than once: \[2\]\)"),
    ([0, 1, 2, 3, 4, 5, 6, 6], r"row 0 .*never visited: \[7\]; visited more than once: \[6\]"),
    ([[0, 1, 2], [0, 1, 5]], r"row 1 .*outside 0\.\.2: \[5\]"),
    ([[0, 1, 2], [-1, 1, 2]], r"row 1 .*outside 0\.\.2: \[-1\]"),
])
def test_from_index_rejects_rows_that_are_not_permutations(index, message):
    with pytest.raises(ValueError, match=r"ScanOrder\.from_index: index " + message):
        ScanOrder.from_index(torch.tensor(index))


@pytest.mark.parametrize("index,local_window,error,message", [
    (torch.tensor([0., 1.]), 0, TypeError, r"index must be an integer tensor, got dtype torch\.float32"),
    (torch.zeros(2, 2, 2, dtype=torch.long), 0, ValueError, r"index must have shape \(L,\) or \(K, L\)"),
    (torch.arange(4), -1, ValueError, r"local_window must be an int >= 0, got -1"),
])
def test_from_index_bad_arguments(index, local_window, error, message):
    with pytest.raises(error, match=r"ScanOrder\.from_index: " + message):
        ScanOrder.from_index(index, local_window=local_window)


def test_from_index_accepts_permutations_of_any_integer_dtype():
    order = ScanOrder.from_index(torch.tensor([[2, 0, 1], [0, 1, 2]], dtype=torch.int32), local_window=2)
    _check_order(order, 2, 3)
    assert order.local_window == 2
