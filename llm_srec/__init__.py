"""llm-srec: LLM-SRec (Kim et al., KDD'25), a frozen LLM distilled from SASRec for sequential recommendation.

`import llm_srec` is cheap: the public classes are imported on first use (PEP 562 module `__getattr__`, as
transformers' own `_LazyModule`), so `llm-srec --help` and argument errors never load torch or transformers.
The moment the model code is imported (`from llm_srec import LLMSRecForRecommendation`, `import llm_srec.modeling`,
any command that loads a model), its classes are registered with the transformers Auto classes, so
`AutoConfig`/`AutoModel`/`AutoProcessor.from_pretrained` load LLM-SRec and SASRec checkpoints without
`trust_remote_code`; `register_auto_classes()` does it explicitly.
"""

import os as _os

# The Hub-uploadable model code and the card templates sit at the checkout's top level (modeling/, hub_cards/); an
# installed copy holds them inside this folder (setup.cfg package_dir). In a checkout, look for them one level up.
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "modeling")):
    __path__.append(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))

import sys  # noqa: E402
from importlib.abc import MetaPathFinder  # noqa: E402
from importlib.machinery import ModuleSpec  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402
from importlib.util import find_spec  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Sequence  # noqa: E402

from ._lazy import lazy_exports  # noqa: E402

try:
    __version__ = version("llm-srec")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_MODELING_NAMES = ("ItemCatalog", "LLMSRecConfig", "LLMSRecForRecommendation", "LLMSRecOutput",
                   "LLMSRecPreTrainedModel", "LLMSRecProcessor", "Recommendation", "SASRecConfig", "SASRecModel",
                   "SASRecOutput", "SASRecPreTrainedModel")


def register_auto_classes() -> None:
    """Register the SASRec and LLM-SRec config, model and processor classes with the transformers Auto classes
    (idempotent)."""
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from .modeling import LLMSRecConfig, LLMSRecForRecommendation, LLMSRecProcessor, SASRecConfig, SASRecModel

    AutoConfig.register(SASRecConfig.model_type, SASRecConfig, exist_ok=True)
    AutoModel.register(SASRecConfig, SASRecModel, exist_ok=True)
    AutoConfig.register(LLMSRecConfig.model_type, LLMSRecConfig, exist_ok=True)
    AutoModel.register(LLMSRecConfig, LLMSRecForRecommendation, exist_ok=True)
    AutoProcessor.register(LLMSRecConfig, LLMSRecProcessor, exist_ok=True)


class _RegisterWithModeling(MetaPathFinder):
    """Register the Auto classes right after `llm_srec.modeling` is first imported, by whatever path (the command
    line and the pipeline import it directly): without that, loading a saved folder's processor would ask to trust
    its remote code."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != f"{__name__}.modeling":
            return None
        sys.meta_path.remove(self)  # once, and the normal finders locate the package
        spec = find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            register_auto_classes()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if f"{__name__}.modeling" not in sys.modules:
    sys.meta_path.insert(0, _RegisterWithModeling())

__getattr__, __dir__ = lazy_exports(
    __name__, {"build_tiny_backbone": "backbones", **dict.fromkeys(_MODELING_NAMES, "modeling")}
)

__all__ = ["__version__", "register_auto_classes", "build_tiny_backbone", *_MODELING_NAMES]
