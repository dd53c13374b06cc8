"""Selective-scan kernel benchmark: our Triton op against its floor, the reference and the mamba-ssm way.

    python tools/bench_kernels.py [--out DIR] [--dtypes bf16,fp32] [--shapes vim_t,...] [--no-reference]

Measures the GPU's copy bandwidth and exp2 rate, then times per shape, dtype and pass (forward; forward + backward)
`triton` (one call for K directions, plus the merge; for K > 1 also with the merge and gate inside the op),
`reference`, and `mamba_ssm` called as the official codes do (a gathered copy per direction). Each row: median ms
(do_bench, L2 flushed), the floor (max(bytes / bandwidth, exps / exp2 rate), each tensor touched once), our share
of it, mamba_ssm / triton. Writes bench_kernels.md / .json to --out.
"""
import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# name: (batch, K, d, L, local_window, order, grid, d_state)
SHAPES = {
    "vim_t": (128, 2, 384, 197, 0, "bidirectional", None, 16),
    "vim_s": (128, 2, 768, 197, 0, "bidirectional", None, 16),
    "vim_t_1024": (8, 2, 384, 4097, 0, "bidirectional", None, 16),
    # batch 1: the segmented forward and backward (few rows, long sequence)
    "vim_t_1024_b1": (1, 2, 384, 4097, 0, "bidirectional", None, 16),
    "vmamba_s1": (64, 4, 192, 3136, 0, "cross", (56, 56), 16),
    "lbvim_t": (128, 1, 384, 196, 8, "raster", None, 16),
    "lbvim_t_plain": (128, 1, 384, 196, 0, "raster", None, 16),
    # MobileMamba-T2's three stages at batch 256 (192 px): d_state 1
    "mobilemamba_t2_s1": (256, 2, 224, 144, 0, "bidirectional", None, 1),
    "mobilemamba_t2_s2": (256, 2, 384, 36, 0, "bidirectional", None, 1),
    "mobilemamba_t2_s3": (256, 2, 448, 9, 0, "bidirectional", None, 1),
}


def measure_copy_bandwidth():
    import triton.testing as tt
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    ms = tt.do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode="median")
    del src, dst
    return 2 * n / (ms * 1e-3)


def measure_exp2_rate():
    import triton
    import triton.language as tl
    import triton.testing as tt

    @triton.jit
    def _exp2_chains(out_ptr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x0 = offs.to(tl.float32) * 1e-9
        x1 = x0 + 0.25
        x2 = x0 + 0.5
        x3 = x0 + 0.75
        for _ in range(ITERS):
            x0 = tl.exp2(x0) - 1.0
            x1 = tl.exp2(x1) - 1.0
            x2 = tl.exp2(x2) - 1.0
            x3 = tl.exp2(x3) - 1.0
        tl.store(out_ptr + offs, x0 + x1 + x2 + x3)

    block, programs, iters = 256, 132 * 64, 512
    out = torch.empty(block * programs, device="cuda")
    run = lambda: _exp2_chains[(programs,)](out, ITERS=iters, BLOCK=block, num_warps=8)
    ms = tt.do_bench(run, warmup=50, rep=300, return_mode="median")
    return 4 * iters * block * programs / (ms * 1e-3)


def make_index(order, K, L, grid, device):
    ar = torch.arange(L, device=device)
    if order == "raster":
        return ar[None].expand(K, L).contiguous()
    if order == "bidirectional":
        return torch.stack([ar, ar.flip(0)])
    if order == "cross":
        h, w = grid
        col = torch.arange(L, device=device).view(h, w).t().reshape(-1)
        return torch.stack([ar, col, ar.flip(0), col.flip(0)])
    raise ValueError(order)


def make_inputs(b, K, d, L, dtype, device="cuda", seed=0, layout="channels_last", N=16):
    """layout "channels_last": the transposed views vimamba's models pass; "contiguous": what mamba-ssm gets."""
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, device=device, generator=g)
    if layout == "channels_last":
        chan = lambda: r(b, K, L, d).transpose(-1, -2)
        x_dbl = r(b, K, L, 24 + 2 * N).to(dtype)
        B, C = x_dbl[..., 24:24 + N].transpose(-1, -2), x_dbl[..., 24 + N:].transpose(-1, -2)
    elif layout == "contiguous":
        chan = lambda: r(b, K, d, L)
        B, C = r(b, K, N, L).to(dtype), r(b, K, N, L).to(dtype)
    else:
        raise ValueError(f"layout: expected 'channels_last' or 'contiguous', got {layout!r}")
    return dict(
        u=chan().to(dtype),
        delta=(chan() * 0.5 - 1.0).to(dtype),
        A=-torch.exp(torch.log(torch.arange(1, N + 1, device=device, dtype=torch.float32)))
        .expand(K, d, N).contiguous(),
        B=B,
        C=C,
        D=torch.ones(K, d, device=device),
        z=chan().to(dtype),
        delta_bias=(r(K, d) * 0.5 - 4.0),
    )


def floors(b, K, d, L, dtype, bw, exp_rate, N=16):
    es = torch.tensor([], dtype=dtype).element_size()
    per = b * K * L
    fwd_bytes = es * per * (3 * d + 2 * N + d)             # u, delta, z, B, C in; y out
    bwd_bytes = es * per * (3 * d + 2 * N + d) + es * per * (3 * d + 2 * N)  # + dy in; du, ddelta, dz, dB, dC out
    exps = per * d * N
    f = max(fwd_bytes / bw, exps / exp_rate)
    fb = f + max(bwd_bytes / bw, exps / exp_rate)
    return f, fb, fwd_bytes, exps


def ours(x, index, W, backend, merge=None):
    """Our op: K gated outputs summed by PyTorch, or with `merge` the directions merged and gated in the op, as the
    models call it (z then (b, d, L))."""
    from vimamba.ops import selective_scan

    K = x["u"].shape[1]

    def fwd(xs):
        y = selective_scan(xs["u"], xs["delta"], xs["A"], xs["B"], xs["C"], xs["D"], xs["z"], xs["delta_bias"],
                           True, order=index, local_window=W, backend=backend, merge=merge)
        if merge is not None:
            return y
        # a merge over the (b, K, L, d) view, so the gradient stays channels-last
        y = y.transpose(-1, -2)
        return y.sum(1) if K > 1 else y[:, 0]
    return fwd


def mamba_way(x, index, W):
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    K = x["u"].shape[1]
    L = x["u"].shape[-1]
    ar = torch.arange(L, device=index.device)
    kinds = []
    for k in range(K):
        if torch.equal(index[k], ar):
            kinds.append("id")
        elif torch.equal(index[k], ar.flip(0)):
            kinds.append("flip")
        else:
            kinds.append("gather")
    inv = torch.argsort(index, dim=1)

    def fwd(xs):
        out = None
        for k in range(K):
            kind = kinds[k]
            if kind == "id":
                get = lambda t: t[:, k]
            elif kind == "flip":
                get = lambda t: t[:, k].flip(-1)
            else:
                get = lambda t: t[:, k].index_select(-1, index[k])
            yk = selective_scan_fn(get(xs["u"]), get(xs["delta"]), xs["A"][k], get(xs["B"]), get(xs["C"]),
                                   xs["D"][k], z=get(xs["z"]), delta_bias=xs["delta_bias"][k], delta_softplus=True)
            if kind == "flip":
                yk = yk.flip(-1)
            elif kind == "gather":
                yk = yk.index_select(-1, inv[k])
            out = yk if out is None else out + yk
        return out
    return fwd


def time_way(make_fwd, x, backward, rep_ms):
    import triton.testing as tt

    if backward:
        xs = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
        fwd = make_fwd
        y = fwd(xs)
        dy = torch.randn_like(y)
        leaves = [v for v in xs.values()]

        def run():
            out = fwd(xs)
            torch.autograd.grad(out, leaves, dy)
    else:
        xs = x

        def run():
            with torch.no_grad():
                make_fwd(xs)
    run()
    torch.cuda.synchronize()
    return tt.do_bench(run, warmup=max(10, rep_ms // 4), rep=rep_ms, return_mode="median")


def sweep(shape_names, dtype, layout, passes=("fwd", "bwd")):
    import triton.testing as tt
    from vimamba.kernels import selective_scan as ss

    base = dict(ss._CFG)
    results = []
    # the step kernels: (channels per thread, warps, register cap or 0); B and C read from an fp32 copy or not
    fwd_cfgs = [dict(step_regs_fwd=r, step_warps_fwd=nw, maxnreg_step=reg)
                for r, nw, reg in [(1, 4, 0), (1, 4, 80), (1, 4, 96), (1, 2, 0), (1, 2, 80), (1, 1, 0), (1, 1, 80),
                                   (2, 2, 0), (2, 1, 0), (2, 4, 0), (2, 2, 128)]]
    fwd_cfgs += [dict(bc_fp32=True)]
    bwd_cfgs = [dict(step_regs_bwd=r, step_warps_bwd=nw, maxnreg_step_bwd=reg, scatter_bwd=sc)
                for r, nw, reg, sc in [(1, 1, 0, True), (1, 1, 168, True), (1, 1, 128, True), (1, 1, 0, False),
                                       (1, 2, 0, False), (1, 4, 0, False), (2, 1, 0, False)]]
    bwd_cfgs += [dict(bc_fp32=True)]
    # with a local window: the register caps of the windowed kernels (0: none)
    fwd_cfgs += [dict(maxnreg_step_win=reg) for reg in (0, 96, 128, 168)]
    bwd_cfgs += [dict(maxnreg_step_bwd_win=reg) for reg in (0, 128, 168, 200)]
    for name in shape_names:
        b, K, d, L, W, order, grid, N = SHAPES[name]
        x = make_inputs(b, K, d, L, dtype, layout=layout, N=N)
        index = make_index(order, K, L, grid, "cuda")
        args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True, index, W)
        y, _ = ss.selective_scan_fwd(*args)
        dy = torch.randn_like(y)
        for cfg in (fwd_cfgs if "fwd" in passes else []):
            ss._CFG.update(base)
            ss._CFG.update(cfg)
            try:
                t0 = time.time()
                ss.selective_scan_fwd(*args)
                torch.cuda.synchronize()
                comp = time.time() - t0
                ms = tt.do_bench(lambda: ss.selective_scan_fwd(*args), warmup=10, rep=60, return_mode="median")
            except Exception as e:  # noqa: BLE001 - report and go on
                ms, comp = float("nan"), float("nan")
                print(f"  fwd {cfg}: {type(e).__name__}: {str(e)[:200]}")
            results.append(dict(shape=name, dtype=str(dtype), pass_="fwd", cfg=cfg, ms=ms, compile_s=comp))
            print(f"sweep {name:14s} fwd {cfg} {ms:.4f} ms (first call {comp:.1f} s)", flush=True)
        for cfg in (bwd_cfgs if "bwd" in passes else []):
            ss._CFG.update(base)
            ss._CFG.update(cfg)
            try:
                t0 = time.time()
                ss.selective_scan_bwd(dy, *args)
                torch.cuda.synchronize()
                comp = time.time() - t0
                ms = tt.do_bench(lambda: ss.selective_scan_bwd(dy, *args), warmup=10, rep=60, return_mode="median")
            except Exception as e:  # noqa: BLE001
                ms, comp = float("nan"), float("nan")
                print(f"  bwd {cfg}: {type(e).__name__}: {str(e)[:200]}")
            results.append(dict(shape=name, dtype=str(dtype), pass_="bwd", cfg=cfg, ms=ms, compile_s=comp))
            print(f"sweep {name:14s} bwd {cfg} {ms:.4f} ms (first call {comp:.1f} s)", flush=True)
    ss._CFG.update(base)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--dtypes", default="bf16,fp32")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--rep", type=int, default=200, help="do_bench rep (ms) for our kernels and mamba-ssm")
    p.add_argument("--sweep", default="", help="comma list of shapes to sweep kernel configs on (bf16) first")
    p.add_argument("--sweep-only", action="store_true")
    p.add_argument("--sweep-passes", default="fwd,bwd", help="which kernels to sweep: fwd, bwd or both")
    p.add_argument("--sweep-apply", action="store_true", help="use the fastest swept configs for the table")
    p.add_argument("--wait-mamba", default="", help="before the mamba-ssm timings, wait (up to 400 s) for this file "
                   "to exist (a background build writes it), then add its folder's sibling to sys.path")
    p.add_argument("--mamba-path", default="", help="folder holding the mamba_ssm package (pip --target)")
    p.add_argument("--layout", default="channels_last", choices=("channels_last", "contiguous"),
                   help="layout of our op's inputs (the mamba-ssm way always gets contiguous ones, as in the "
                   "official codes)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_kernels.py needs a CUDA device")
    import triton

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.cuda.get_device_name()
    bw = measure_copy_bandwidth()
    exp_rate = measure_exp2_rate()
    print(f"device {dev}; copy bandwidth {bw / 1e9:.0f} GB/s (read + write); exp2 {exp_rate / 1e12:.2f} T/s", flush=True)

    sweep_results = sweep(args.sweep.split(","), torch.bfloat16, args.layout,
                                  args.sweep_passes.split(",")) if args.sweep else []
    if sweep_results and args.sweep_apply:
        from vimamba.kernels import selective_scan as ss
        first = args.sweep.split(",")[0]
        for pass_ in ("fwd", "bwd"):
            ok = [r for r in sweep_results if r["shape"] == first and r["pass_"] == pass_ and r["ms"] == r["ms"]]
            if ok:
                best = min(ok, key=lambda r: r["ms"])
                ss._CFG.update(best["cfg"])
                print(f"sweep: using {best['cfg']} ({best['ms']:.4f} ms on {first})", flush=True)
    if args.sweep_only:
        (out_dir / "bench_sweep.json").write_text(json.dumps(sweep_results, indent=1))
        return

    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
    from vimamba.scans.base import ScanOrder
    cases = []
    for name in args.shapes.split(","):
        for dname in args.dtypes.split(","):
            for backward in (False, True):
                cases.append((name, dname, backward))
    rows = []
    # phase 1: our kernels and the reference
    for name, dname, backward in cases:
        b, K, d, L, W, order, grid, N = SHAPES[name]
        index = make_index(order, K, L, grid, "cuda")
        dtype = dtypes[dname]
        x = make_inputs(b, K, d, L, dtype, layout=args.layout, N=N)
        f_floor, fb_floor, fbytes, exps = floors(b, K, d, L, dtype, bw, exp_rate, N)
        row = dict(shape=name, batch=b, K=K, d=d, L=L, W=W, dtype=dname, pass_="fwd+bwd" if backward else "fwd")
        row["floor_ms"] = (fb_floor if backward else f_floor) * 1e3
        t0 = time.time()
        order = ScanOrder.from_index(index)
        row["triton_ms"] = time_way(ours(x, order, W, "triton"), x, backward, args.rep)
        row["pct_floor"] = 100 * row["floor_ms"] / row["triton_ms"]
        if K > 1:
            xm = dict(x, z=x["z"][:, 0])
            row["merged_ms"] = time_way(ours(xm, order, W, "triton", "sum"), xm, backward, args.rep)
        if not args.no_reference:
            try:
                row["reference_ms"] = time_way(ours(x, order, W, "reference"), x, backward, max(20, args.rep // 4))
            except torch.cuda.OutOfMemoryError:
                row["reference_ms"] = float("nan")
        del x
        torch.cuda.empty_cache()
        rows.append(row)
        print(_fmt_row(row) + f"   ({time.time() - t0:.0f} s)", flush=True)

    # phase 2: the mamba-ssm way
    if args.wait_mamba:
        t0 = time.time()
        while not os.path.exists(args.wait_mamba) and time.time() - t0 < 400:
            time.sleep(2)
        print(f"waited {time.time() - t0:.0f} s for {args.wait_mamba}", flush=True)
    if args.mamba_path:
        sys.path.insert(0, args.mamba_path)
    try:
        import mamba_ssm  # noqa: F401
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
        have_mamba = True
        mamba_version = getattr(mamba_ssm, "__version__", "?")
    except Exception as e:  # noqa: BLE001
        have_mamba = False
        mamba_version = f"not importable ({type(e).__name__}: {str(e)[:200]})"
    print(f"mamba_ssm: {mamba_version}", flush=True)
    if have_mamba:
        for row in rows:
            if row["W"]:
                continue
            b, K, d, L, W, order, grid, N = SHAPES[row["shape"]]
            index = make_index(order, K, L, grid, "cuda")
            x = make_inputs(b, K, d, L, dtypes[row["dtype"]], layout="contiguous", N=N)
            try:
                row["mamba_ssm_ms"] = time_way(mamba_way(x, index, W), x, row["pass_"] == "fwd+bwd", args.rep)
                row["ratio_mamba"] = row["mamba_ssm_ms"] / row["triton_ms"]
            except Exception as e:  # noqa: BLE001
                print(f"  mamba_ssm failed on {row['shape']}: {type(e).__name__}: {str(e)[:300]}")
            del x
            torch.cuda.empty_cache()
            print(_fmt_row(row), flush=True)

    meta = dict(layout=args.layout, device=dev, copy_bandwidth_GBps=bw / 1e9, exp2_Tps=exp_rate / 1e12, torch=torch.__version__,
                triton=triton.__version__, mamba_ssm=mamba_version, python=platform.python_version(),
                command=" ".join(["python"] + sys.argv), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    from vimamba.kernels import selective_scan as ss
    meta["kernel_config"] = dict(ss._CFG)
    (out_dir / "bench_kernels.json").write_text(json.dumps(dict(meta=meta, rows=rows, sweep=sweep_results),
                                                           indent=1))
    md = _markdown(meta, rows)
    (out_dir / "bench_kernels.md").write_text(md)
    print()
    print(md)


HEAD = ("| shape | batch, K, d, L, W | dtype | pass | triton ms | merged in the op ms | floor ms | % of floor "
        "| mamba-ssm way ms | mamba / triton | reference ms |")


def _f(v, fmt):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _fmt_row(r):
    return (f"| {r['shape']} | {r['batch']}, {r['K']}, {r['d']}, {r['L']}, {r['W']} | {r['dtype']} | {r['pass_']} "
            f"| {_f(r.get('triton_ms'), '.3f')} | {_f(r.get('merged_ms'), '.3f')} | {_f(r.get('floor_ms'), '.3f')} "
            f"| {_f(r.get('pct_floor'), '.0f')}% "
            f"| {_f(r.get('mamba_ssm_ms'), '.3f')} | {_f(r.get('ratio_mamba'), '.2f')}x "
            f"| {_f(r.get('reference_ms'), '.2f')} |")


def _markdown(meta, rows):
    lines = [
        f"Device: {meta['device']}; copy bandwidth {meta['copy_bandwidth_GBps']:.0f} GB/s (read + write), "
        f"exp2 {meta['exp2_Tps']:.2f} T/s (both measured in this run); torch {meta['torch']}, "
        f"triton {meta['triton']}, mamba_ssm {meta['mamba_ssm']}; {meta['date']}.",
        f"Command: `{meta['command']}`. Kernel config: `{meta['kernel_config']}`.",
        "",
        HEAD,
        "|" + "---|" * 11,
    ]
    lines += [_fmt_row(r) for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
