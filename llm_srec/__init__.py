"""llm-srec: LLM-SRec (Kim et al., KDD'25), a frozen LLM distilled from SASRec for sequential recommendation.

Importing the package registers the model classes with the transformers Auto classes, so
`AutoConfig`/`AutoModel`/`AutoProcessor.from_pretrained` load LLM-SRec and SASRec checkpoints without
`trust_remote_code`.
"""

import os as _os

# The Hub-uploadable model code and the card templates sit at the checkout's top level (modeling/, hub_cards/); an
# installed copy holds them inside this folder (setup.cfg package_dir). In a checkout, look for them one level up.
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "modeling")):
    __path__.append(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from transformers import AutoConfig, AutoModel, AutoProcessor

from .backbones import build_tiny_backbone
from .modeling import (
    ItemCatalog,
    LLMSRecConfig,
    LLMSRecForRecommendation,
    LLMSRecOutput,
    LLMSRecPreTrainedModel,
    LLMSRecProcessor,
    Recommendation,
    SASRecConfig,
    SASRecModel,
    SASRecOutput,
    SASRecPreTrainedModel,
)

try:
    __version__ = version("llm-srec")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

AutoConfig.register(SASRecConfig.model_type, SASRecConfig, exist_ok=True)
AutoModel.register(SASRecConfig, SASRecModel, exist_ok=True)
AutoConfig.register(LLMSRecConfig.model_type, LLMSRecConfig, exist_ok=True)
AutoModel.register(LLMSRecConfig, LLMSRecForRecommendation, exist_ok=True)
AutoProcessor.register(LLMSRecConfig, LLMSRecProcessor, exist_ok=True)

__all__ = [
    "__version__",
    "build_tiny_backbone",
    "ItemCatalog",
    "LLMSRecConfig",
    "LLMSRecForRecommendation",
    "LLMSRecOutput",
    "LLMSRecPreTrainedModel",
    "LLMSRecProcessor",
    "Recommendation",
    "SASRecConfig",
    "SASRecModel",
    "SASRecOutput",
    "SASRecPreTrainedModel",
]
