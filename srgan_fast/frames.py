"""Deprecated alias of srgan_fast.frame_io (the op's one name, shared with csrc/frame_io*).

`from srgan_fast import frames` keeps working and gives the same functions; new code imports
`srgan_fast.frame_io`. No warning is raised, so existing callers stay quiet.
"""

from .frame_io import *  # noqa: F403
from .frame_io import __all__  # noqa: F401
