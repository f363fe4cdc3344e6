"""Files in and out, one module per I/O path.

images (read/write image files), paths (the output-path guard every command shares),
batch (`srgan-fast upscale`: image files in, image files out), ray (the same on a Ray cluster),
yuv / yuv_reference (YUV <-> RGB through the native extension, and its numpy oracle),
video/ (`srgan-fast video`: reader, writer, colour). Importing this package imports none of them.
"""
