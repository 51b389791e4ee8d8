"""LLM-SRec model code: configs, SASRec teacher, item catalog, processor and the LLM-SRec model.

The files of this folder are flat and import only torch, transformers (and its dependencies) and the standard
library, with relative imports between themselves, so `save_pretrained` can copy them next to a checkpoint and
`AutoModel.from_pretrained(..., trust_remote_code=True)` works where `llm_srec` is not installed.
"""

from .catalog_llm_srec import ItemCatalog
from .configuration_llm_srec import LLMSRecConfig
from .configuration_sasrec import SASRecConfig
from .modeling_llm_srec import (
    LLMSRecForRecommendation,
    LLMSRecModel,
    LLMSRecModelOutput,
    LLMSRecOutput,
    LLMSRecPreTrainedModel,
    Recommendation,
)
from .modeling_sasrec import SASRecModel, SASRecOutput, SASRecPreTrainedModel
from .processing_llm_srec import LLMSRecProcessor

__all__ = [
    "ItemCatalog",
    "LLMSRecConfig",
    "LLMSRecForRecommendation",
    "LLMSRecModel",
    "LLMSRecModelOutput",
    "LLMSRecOutput",
    "LLMSRecPreTrainedModel",
    "LLMSRecProcessor",
    "Recommendation",
    "SASRecConfig",
    "SASRecModel",
    "SASRecOutput",
    "SASRecPreTrainedModel",
]
