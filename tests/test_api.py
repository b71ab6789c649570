"""The public face: a complete, sorted __all__, and a light import."""

from __future__ import annotations

import subprocess
import sys
import types

import descend


def test_all_is_sorted_and_complete():
    assert descend.__all__ == sorted(descend.__all__)
    public = {n for n, v in vars(descend).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    public |= {n for n, v in vars(descend).items()
               if isinstance(v, types.ModuleType) and n in descend.__all__}
    public |= descend._LAZY  # imported on first use
    assert public | {"__version__"} == set(descend.__all__)
    for name in descend.__all__:
        assert hasattr(descend, name), name


def test_import_descend_pulls_in_no_plotting_dataframe_or_file_format_library():
    # (tqdm is not listed: torch itself imports it)
    heavy = ["pandas", "matplotlib", "pyarrow", "scipy", "sklearn", "safetensors", "playwright"]
    code = (f"import sys, descend; print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
