"""Every numba kernel of the library is compiled with the one set of options in fractalshards.jit."""

from __future__ import annotations

import importlib
import pkgutil

from numba.core.registry import CPUDispatcher

import fractalshards
from fractalshards.jit import JIT_OPTIONS


def _kernels():
    for info in pkgutil.walk_packages(fractalshards.__path__, "fractalshards."):
        if ".train" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", value


def test_every_kernel_has_the_shared_options_and_no_fastmath():
    kernels = dict(_kernels())
    # Both families' kernel modules and the seeds are found (the walk is not vacuous).
    assert any(k.startswith("fractalshards.families.contours.") for k in kernels)
    assert any(k.startswith("fractalshards.families.fractaldb.kernels.") for k in kernels)
    assert "fractalshards.seeds.splitmix64" in kernels
    for name, dispatcher in kernels.items():
        options = dispatcher.targetoptions
        for key, value in JIT_OPTIONS.items():
            if key == "cache":  # not a target option: the dispatcher holds a cache object, or a null one
                assert type(dispatcher._cache).__name__ != "NullCache", name
            else:
                assert options.get(key) == value, (name, key, options)
        assert not options.get("fastmath"), name
