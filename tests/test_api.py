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


def test_fit_is_the_function_even_after_its_module_was_imported():
    import descend.fit  # (a plain import of the module must not rebind descend.fit)

    assert callable(descend.fit) and descend.fit.__name__ == "fit"
    assert descend.FitResult.__name__ == "FitResult"


def test_the_demo_imports_no_symbolic_shape_machinery():
    # passing grad_outputs to torch.autograd.grad imports sympy (0.4 s); the demo must not
    code = ("import sys; from descend.cli import main; main(['demo', '--quiet', '--no-record']);"
            "print('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[-1] == "False"
