"""Compile the selective-scan kernels for an H100 (sm_90) without a GPU and report what it would run: registers,
spills, shared memory, layout conversions and each loop's instruction mix per state update (with the registers,
these predict the H100 timings: docs/kernels.md). Strides of 1 are compiled as constants, as Triton specialises
them at run time. To compile with another Triton, put it first on PYTHONPATH.

    python tools/kernel_sass.py step_fwd                          # the forward step kernel, bf16, Vim's flags
    python tools/kernel_sass.py step_bwd --maxnreg 168            # the backward step kernel under a register cap
    python tools/kernel_sass.py step_fwd --window 8               # with LBMamba's local window (W = 8)
    PYTHONPATH=/tmp/t36 python tools/kernel_sass.py step_fwd --keep out/sass   # with triton 3.6, keep PTX/SASS
"""
import argparse
import collections
import inspect
import re
import subprocess
import tempfile
from pathlib import Path

KERNELS = {"step_fwd": "_fwd_step_kernel", "step_bwd": "_bwd_step_kernel"}
# activations and their gradients; parameters and buffers stay fp32
_ACTIVATIONS = {"u_ptr", "dl_ptr", "B_ptr", "C_ptr", "z_ptr", "y_ptr", "dy_ptr", "du_ptr", "ddl_ptr", "dz_ptr"}


def compile_kernel(args):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from vimamba.kernels import selective_scan as ss

    kernel = getattr(ss, KERNELS[args.kernel])
    flags = dict(HAS_D=not args.plain, HAS_Z=not args.plain, HAS_BIAS=not args.plain, SOFTPLUS=not args.plain,
                 FAST=True, PASS=args.pass_)
    bc32 = args.window > 1 if args.bc32 < 0 else bool(args.bc32)
    consts = dict(N=args.N, BD=args.regs * 32 * args.warps, PAIRS=args.pairs, W=args.window,
                  BC32=bc32, **flags)
    if args.kernel == "step_bwd":
        consts["SCATTER"] = args.scatter and args.regs * args.warps == 1 and args.N == 16
    # the backward's loops walk chunks of two steps; the forward's one step
    updates = args.N * args.regs * (2 if args.kernel == "step_bwd" else 1)
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in consts:
            signature[name] = "constexpr"
        elif name == "idx_ptr":
            signature[name] = "*i64"
        elif name.endswith("_ptr"):
            signature[name] = f"*{args.dtype}" if name in _ACTIVATIONS else "*fp32"
        elif re.fullmatch(r"s\w+_(d|n)", name):
            signature[name], consts[name] = "constexpr", 1
        else:
            signature[name] = "i32"
    options = dict(num_warps=args.warps, **({"maxnreg": args.maxnreg} if args.maxnreg else {}))
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=consts),
                              target=GPUTarget("cuda", 90, 32), options=options)
    return triton, compiled, updates


def loops(sass: str):
    """(first address, last address, instruction counts) of each backward branch's body."""
    ins = [(int(m.group(1), 16), m.group(2).strip()) for m in
           (re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line) for line in sass.splitlines()) if m]
    for addr, text in ins:
        target = re.search(r"BRA (0x[0-9a-f]+)", text)
        if target and int(target.group(1), 16) < addr:
            lo = int(target.group(1), 16)
            yield lo, addr, collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0]
                                                for a, t in ins if lo <= a <= addr)


def _addresses(sass: str):
    return [int(m.group(1), 16) for m in (re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
                                          for line in sass.splitlines()) if m]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kernel", choices=sorted(KERNELS))
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    p.add_argument("--N", type=int, default=16, help="d_state")
    p.add_argument("--regs", type=int, default=1, help="channels per thread")
    p.add_argument("--warps", type=int, default=1)
    p.add_argument("--window", type=int, default=0, help="local window W (0: none)")
    p.add_argument("--pass", dest="pass_", type=int, default=0, help="PASS (0: one segment)")
    p.add_argument("--maxnreg", type=int, default=0, help="register cap (0: none)")
    p.add_argument("--pairs", type=int, default=1, help="bf16 states read two per word")
    p.add_argument("--bc32", type=int, default=-1, help="B, C read from their fp32 copy (-1: with a window)")
    p.add_argument("--scatter", type=int, default=1, help="backward: recursive-halving lane sum")
    p.add_argument("--plain", action="store_true", help="no z, D, delta bias or softplus")
    p.add_argument("--keep", default="", help="folder to keep the TTGIR, PTX and SASS in")
    args = p.parse_args()

    triton, compiled, updates = compile_kernel(args)
    bin_dir = Path(triton.backends.nvidia.__path__[0]) / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "kernel.ptx").write_text(compiled.asm["ptx"])
        (work / "kernel.ttgir").write_text(compiled.asm["ttgir"])
        ptxas = subprocess.run([str(bin_dir / "ptxas"), "-arch=sm_90a", "-v", str(work / "kernel.ptx"), "-o",
                                str(work / "kernel.cubin")], capture_output=True, text=True)
        sass = subprocess.run([str(bin_dir / "cuobjdump"), "-sass", str(work / "kernel.cubin")],
                              capture_output=True, text=True).stdout
        (work / "kernel.sass").write_text(sass)
    regs = re.search(r"Used (\d+) registers", ptxas.stderr)
    spills = re.findall(r"(\d+) bytes spill (stores|loads)", ptxas.stderr)
    ttgir = compiled.asm["ttgir"]
    print(f"{args.kernel} triton {triton.__version__}: {regs.group(1) if regs else '?'} registers, spills "
          f"{', '.join(f'{n} B {kind}' for n, kind in spills) or 'none'}, shared memory {compiled.metadata.shared} B, "
          f"{ttgir.count('ttg.convert_layout')} layout conversions in the TTGIR")
    found = list(loops(sass))
    for lo, hi, counts in found:
        n = sum(counts.values())
        inner = [(a, b) for a, b, _ in found if lo <= a and b <= hi and (a, b) != (lo, hi)]
        # a loop holding others (the window's reverse sweep inside the token loop): also its own instructions
        own = sum(1 for a in _addresses(sass) if lo <= a <= hi and not any(x <= a <= y for x, y in inner))
        print(f"  loop {lo:#x}-{hi:#x}: {n} instructions, {n / updates:.1f} per state update"
              + (f" ({own} outside its inner loops)" if inner else "") + "; "
              + ", ".join(f"{op} {c}" for op, c in counts.most_common(12)))


if __name__ == "__main__":
    main()
