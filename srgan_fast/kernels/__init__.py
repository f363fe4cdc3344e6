"""Triton kernels of srgan_fast (installed as `srgan_fast.kernels`).

Importing this package imports triton; `import srgan_fast` never does.
"""
