"""Lazy package exports (PEP 562), the pattern of transformers' `_LazyModule`.

Why: `llm_srec`, `llm_srec.data` and `llm_srec.training` re-export classes whose modules import torch and
transformers (seconds of CPU); the command line imports these packages for its parser and must stay instant for
`--help` and argument errors. A package lists ``name -> submodule`` and imports the submodule on first access.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.util import find_spec
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, which exports ``name`` from its submodule
    ``exports[name]`` (and its submodules by name, as after an eager import)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            if not name.startswith("__") and find_spec(f"{package}.{name}") is not None:
                return import_module(f"{package}.{name}")  # a submodule, as after an eager import
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
