"""The file the gst-python plugin loader imports: it registers `srganfast` (srgan_fast.gst.element).

The loader embeds the system python3 and imports every .py file in the `python/` folder of each
GST_PLUGIN_PATH entry. `srgan-fast gst-env` puts this file's parent's parent on GST_PLUGIN_PATH
and srgan_fast/gst/embedded (whose sitecustomize has already given this interpreter its home and
`gi` by the time this file runs) and the installing interpreter's site-packages on PYTHONPATH;
`site.addsitedir` on those entries runs their .pth files, which editable installs need to be found.
"""

import os
import site
import sys

for _p in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    if _p and os.path.isdir(_p):
        site.addsitedir(_p)

try:
    from srgan_fast.gst.element import ELEMENT_NAME, SrganFast
except ImportError as _e:
    sys.stderr.write(
        f"srganfast: cannot import srgan_fast into {sys.executable} {sys.version.split()[0]} ({_e}); "
        'run `eval "$(srgan-fast gst-env)"` with the srgan-fast of the environment that has it installed '
        "(same Python minor version as the system python3)\n"
    )
    raise

from gi.repository import Gst  # noqa: E402

__gstelementfactory__ = (ELEMENT_NAME, Gst.Rank.NONE, SrganFast)
