"""Selective-scan kernels: the PyTorch reference and the Triton kernels with the same signature."""
