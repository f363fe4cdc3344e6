"""Scoring super-resolution the way SR papers do.

  metrics.py   PSNR/SSIM on Y, texture ratio, MATLAB's bicubic imresize (numpy only)
  evaluate.py  `srgan-fast eval`: a method scored on a dataset folder
  datasets.py  where the shared Set5/Set14/... photos live
  demo.py      `srgan-fast demo`: the bundled photo downscaled 4x, upscaled back, scored

Importing this package imports none of them (and so no torch).
"""
