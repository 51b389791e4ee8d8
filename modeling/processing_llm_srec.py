"""`LLMSRecProcessor`: tokenizer + item catalog + prompt templates -> the model's user and item prompt inputs.

It renders the official code's prompts (PAPER.md §3.4 items 2 and 4) character for character and marks the
places where the model injects vectors with special tokens that exist only in the tokenizer: the backbone's
vocabulary is never resized, because the model swaps those ids for the pad id before the embedding lookup.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from transformers import BatchEncoding, PreTrainedTokenizerBase, ProcessorMixin
from transformers.tokenization_utils_base import (
    ADDED_TOKENS_FILE,
    FULL_TOKENIZER_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
)
from transformers.utils import PROCESSOR_NAME, cached_file

from .catalog_llm_srec import ITEM_CATALOG_NAME, ItemCatalog
from .configuration_llm_srec import DEFAULT_PROMPT_TEMPLATES, DEFAULT_SPECIAL_TOKENS, check_prompt_templates
from .saving_llm_srec import read_json

_SERIALIZED_FIELDS = (
    "history_length",
    *DEFAULT_PROMPT_TEMPLATES,
    *DEFAULT_SPECIAL_TOKENS,
    "max_prompt_length",
)

# The JSON files `ProcessorMixin.from_pretrained` reads; checked one by one to name the broken one when it fails.
_PROCESSOR_JSON_FILES = (
    PROCESSOR_NAME, TOKENIZER_CONFIG_FILE, FULL_TOKENIZER_FILE, SPECIAL_TOKENS_MAP_FILE, ADDED_TOKENS_FILE
)

logger = logging.getLogger(__name__)

MAX_UNIX_SECONDS = 95_617_584_000  # 5000-01-01: larger values are almost surely milliseconds


def format_date(timestamp: int) -> str:
    """UTC calendar date ``YYYY-MM-DD`` of a unix timestamp in seconds."""
    return datetime.fromtimestamp(int(timestamp), tz=timezone.utc).strftime("%Y-%m-%d")


class LLMSRecProcessor(ProcessorMixin):
    """Turns histories of internal item ids into LLM-SRec user prompts, and item ids into item prompts.

    Args:
        tokenizer: the backbone's tokenizer. ``[HistoryEmb]``, ``[UserOut]`` and ``[ItemOut]`` are added to it as
            extra special tokens; its pad token becomes the eos token when it has none (never a new vocab row).
        item_catalog: internal id <-> external id <-> title. Required to render prompts; saved as
            ``item_catalog.json``.
        history_length: most recent history items shown in a user prompt (10).
        user_prompt_prefix, history_item_template, history_item_template_no_time, history_separator,
        user_prompt_suffix, item_prompt_template: prompt pieces (defaults: the official code's).
        history_token, user_token, item_token: the special-token strings.
        max_prompt_length: token budget of a prompt; the oldest history items are dropped first to fit (a single
            item still too long has its title shortened), and the output token is never cut off.
    """

    _auto_class = "AutoProcessor"

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        item_catalog: ItemCatalog | None = None,
        history_length: int = 10,
        user_prompt_prefix: str = DEFAULT_PROMPT_TEMPLATES["user_prompt_prefix"],
        history_item_template: str = DEFAULT_PROMPT_TEMPLATES["history_item_template"],
        history_item_template_no_time: str = DEFAULT_PROMPT_TEMPLATES["history_item_template_no_time"],
        history_separator: str = DEFAULT_PROMPT_TEMPLATES["history_separator"],
        user_prompt_suffix: str = DEFAULT_PROMPT_TEMPLATES["user_prompt_suffix"],
        item_prompt_template: str = DEFAULT_PROMPT_TEMPLATES["item_prompt_template"],
        history_token: str = DEFAULT_SPECIAL_TOKENS["history_token"],
        user_token: str = DEFAULT_SPECIAL_TOKENS["user_token"],
        item_token: str = DEFAULT_SPECIAL_TOKENS["item_token"],
        max_prompt_length: int = 1024,
    ) -> None:
        for name, value in (("history_length", history_length), ("max_prompt_length", max_prompt_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"LLMSRecProcessor.{name} must be a positive integer, got {value!r}.")
        templates = {
            "user_prompt_prefix": user_prompt_prefix,
            "history_item_template": history_item_template,
            "history_item_template_no_time": history_item_template_no_time,
            "history_separator": history_separator,
            "user_prompt_suffix": user_prompt_suffix,
            "item_prompt_template": item_prompt_template,
        }
        special_tokens = {"history_token": history_token, "user_token": user_token, "item_token": item_token}
        check_prompt_templates(templates, special_tokens)
        super().__init__(tokenizer)
        self.history_length = history_length
        self.max_prompt_length = max_prompt_length
        for name, value in {**templates, **special_tokens}.items():
            setattr(self, name, value)
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError(
                    "The tokenizer has neither a pad token nor an eos token to pad with; set tokenizer.pad_token to "
                    "an existing token (LLM-SRec never adds a vocabulary row)."
                )
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.add_special_tokens(
            {"extra_special_tokens": list(special_tokens.values())}, replace_extra_special_tokens=False
        )
        self.history_token_id = tokenizer.convert_tokens_to_ids(history_token)
        self.user_token_id = tokenizer.convert_tokens_to_ids(user_token)
        self.item_token_id = tokenizer.convert_tokens_to_ids(item_token)
        self.pad_token_id = tokenizer.pad_token_id
        self.item_catalog = item_catalog

    @classmethod
    def from_config(
        cls, config: Any, tokenizer: PreTrainedTokenizerBase, item_catalog: ItemCatalog | None = None
    ) -> LLMSRecProcessor:
        """Build a processor whose templates, history length and token budget are those of an `LLMSRecConfig`."""
        return cls(
            tokenizer,
            item_catalog,
            history_length=config.history_length,
            max_prompt_length=config.max_prompt_length,
            **config.prompt_templates,
            **config.special_tokens,
        )

    # ----------------------------------------------------------------------------------------------- catalog
    @property
    def item_catalog(self) -> ItemCatalog | None:
        return self._item_catalog

    @item_catalog.setter
    def item_catalog(self, catalog: ItemCatalog | None) -> None:
        if catalog is not None:
            if not isinstance(catalog, ItemCatalog):
                raise ValueError(f"item_catalog must be an ItemCatalog, got {type(catalog).__name__}.")
            tokens = (self.history_token, self.user_token, self.item_token)
            for internal_id, title in enumerate(catalog.titles, start=1):
                found = [token for token in tokens if token in title]
                if found:
                    raise ValueError(
                        f"The title of item {internal_id} ({catalog.external_ids[internal_id - 1]!r}) contains the "
                        f"special token(s) {found}, which would break the prompt's embedding slots."
                    )
        self._item_catalog = catalog
        self._item_prompt_cache: dict[int, list[int]] = {}

    def _catalog(self) -> ItemCatalog:
        if self._item_catalog is None:
            raise ValueError("This processor has no item catalog: set processor.item_catalog = ItemCatalog(...).")
        return self._item_catalog

    @property
    def prompt_templates(self) -> dict[str, str]:
        """The six prompt pieces, keyed as in `LLMSRecConfig.prompt_templates`."""
        return {name: getattr(self, name) for name in DEFAULT_PROMPT_TEMPLATES}

    @property
    def special_tokens(self) -> dict[str, str]:
        """The special-token strings, keyed as in `LLMSRecConfig.special_tokens`."""
        return {name: getattr(self, name) for name in DEFAULT_SPECIAL_TOKENS}

    # --------------------------------------------------------------------------------------------- rendering
    def _slots(
        self,
        history: Sequence[int],
        timestamps: Sequence[int] | None,
        order: Sequence[int] | None,
    ) -> tuple[list[int], list[int | None]]:
        """The (item, timestamp) pairs of the prompt's slots: the last ``history_length`` positions.

        ``order`` permutes the items over the whole history while the timestamps stay in their positions, which is
        the paper's shuffle (only titles and embeddings move; numbers and times stay in place).
        """
        catalog = self._catalog()
        items = catalog.check_internal(history)
        if not items:
            raise ValueError("Empty history: a user prompt needs at least one history item.")
        if timestamps is None or len(timestamps) == 0:
            times: list[int | None] = [None] * len(items)
        else:
            if len(timestamps) != len(items):
                raise ValueError(
                    f"Got {len(timestamps)} timestamps for a history of {len(items)} items; pass one per item "
                    "(or none)."
                )
            times = [int(value) if value is not None and int(value) >= 0 else None for value in timestamps]
            too_large = [value for value in times if value is not None and value > MAX_UNIX_SECONDS]
            if too_large:
                raise ValueError(
                    f"Timestamps must be unix seconds; {too_large[0]} is after the year 5000 (milliseconds?)."
                )
        if order is not None:
            order = [int(position) for position in order]
            if sorted(order) != list(range(len(items))):
                raise ValueError(
                    f"order must be a permutation of range({len(items)}) (one entry per history item), got {order}."
                )
            items = [items[position] for position in order]
        return items[-self.history_length :], times[-self.history_length :]

    def _render_user(
        self, items: Sequence[int], times: Sequence[int | None], title_characters: int | None = None
    ) -> str:
        catalog = self._catalog()
        entries = []
        for number, (item, timestamp) in enumerate(zip(items, times), start=1):
            title = catalog.title(item)[:title_characters]
            if timestamp is None:
                entries.append(self.history_item_template_no_time.format(number=number, title=title))
            else:
                entries.append(
                    self.history_item_template.format(number=number, time=format_date(timestamp), title=title)
                )
        return self.user_prompt_prefix + self.history_separator.join(entries) + self.user_prompt_suffix

    def render_user_prompt(
        self,
        history: Sequence[int],
        timestamps: Sequence[int] | None = None,
        order: Sequence[int] | None = None,
    ) -> str:
        """The user prompt of one history of internal ids (oldest first), before any token-budget truncation.

        Args:
            history: internal item ids, oldest first; the last ``history_length`` are shown, numbered from 1.
            timestamps: unix seconds per history item (rendered as UTC ``YYYY-MM-DD``); None, an empty list or a
                negative value renders the item without a time.
            order: optional permutation of ``range(len(history))``; slot ``j`` then shows item
                ``history[order[j]]`` with the number and timestamp of position ``j`` (the paper's shuffle probe).
        """
        return self._render_user(*self._slots(history, timestamps, order))

    def render_item_prompt(self, item_id: int) -> str:
        """The item prompt of one internal item id."""
        return self.item_prompt_template.format(title=self._catalog().title(int(item_id)))

    # ------------------------------------------------------------------------------------------ tokenisation
    def _fit_user_prompt(
        self, items: list[int], times: list[int | None], token_ids: list[int]
    ) -> tuple[list[int], list[int]]:
        """Drop the oldest shown items (re-rendering the prompt) until it fits ``max_prompt_length`` tokens; a single
        item whose prompt is still too long has its title shortened (with a warning), the rest of the prompt kept."""
        count = len(items)
        while len(token_ids) > self.max_prompt_length and count > 1:
            count -= 1
            token_ids = self.tokenizer(self._render_user(items[-count:], times[-count:]))["input_ids"]
        if len(token_ids) > self.max_prompt_length:
            token_ids = self._shortened_title_prompt(items[-1:], times[-1:])
        return token_ids, items[-count:]

    def _shortened_title_prompt(self, items: list[int], times: list[int | None]) -> list[int]:
        """Token ids of the one-item user prompt with the longest title prefix that fits the budget (binary search
        over the title's characters)."""
        def encode(characters: int) -> list[int]:
            return self.tokenizer(self._render_user(items, times, characters))["input_ids"]

        low, high = 0, len(self._catalog().title(items[0]))
        shortest = len(encode(0))
        if shortest > self.max_prompt_length:
            raise ValueError(
                f"max_prompt_length={self.max_prompt_length} is too small: a user prompt needs {shortest} tokens even "
                "with one item and an empty title."
            )
        while low < high:
            middle = (low + high + 1) // 2
            if len(encode(middle)) <= self.max_prompt_length:
                low = middle
            else:
                high = middle - 1
        logger.warning(
            "The title of item %d is shortened to %d characters in a one-item user prompt: the full title does not "
            "fit max_prompt_length=%d.", items[0], low, self.max_prompt_length,
        )
        return encode(low)

    def _pad(self, sequences: list[list[int]], return_tensors: str | None) -> BatchEncoding:
        return self.tokenizer.pad({"input_ids": sequences}, padding="longest", return_tensors=return_tensors)

    def __call__(
        self,
        histories: Sequence[Sequence[int]],
        timestamps: Sequence[Sequence[int] | None] | None = None,
        orders: Sequence[Sequence[int] | None] | None = None,
        return_tensors: str | None = "pt",
    ) -> BatchEncoding:
        """Tokenised user prompts for a batch of histories of internal item ids.

        Returns ``input_ids`` and ``attention_mask`` (padded on the tokenizer's padding side) and
        ``history_item_ids``: the internal ids filling each prompt's ``[HistoryEmb]`` slots in order, 0-padded on
        the right. A prompt longer than ``max_prompt_length`` tokens loses its oldest shown items first.

        Args:
            histories: one list of internal ids per user, oldest first.
            timestamps: per user, unix seconds aligned with the history (or None / empty for no time).
            orders: per user, an optional permutation of the history (see `render_user_prompt`).
            return_tensors: ``"pt"`` for tensors, None for lists.
        """
        if isinstance(histories, (str, bytes)) or not hasattr(histories, "__len__") or len(histories) == 0:
            raise ValueError("histories must be a non-empty list of item-id lists (one per user).")
        if any(isinstance(history, (str, bytes)) or not hasattr(history, "__iter__") for history in histories):
            raise ValueError("histories must be a list of item-id lists (one per user), not a flat list of ids.")
        histories = [list(history) for history in histories]
        for name, values in (("timestamps", timestamps), ("orders", orders)):
            if values is not None and len(values) != len(histories):
                raise ValueError(f"Got {len(values)} {name} for {len(histories)} histories.")
        slots = [
            self._slots(
                history,
                None if timestamps is None else timestamps[index],
                None if orders is None else orders[index],
            )
            for index, history in enumerate(histories)
        ]
        texts = [self._render_user(items, times) for items, times in slots]
        encoded = self.tokenizer(texts)["input_ids"]
        token_ids, slot_items = [], []
        for (items, times), ids in zip(slots, encoded):
            ids, shown = self._fit_user_prompt(items, times, ids)
            token_ids.append(ids)
            slot_items.append(shown)
        batch = self._pad(token_ids, return_tensors)
        width = max(len(items) for items in slot_items)
        history_item_ids = [items + [0] * (width - len(items)) for items in slot_items]
        data = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "history_item_ids": history_item_ids,
        }
        return BatchEncoding(data, tensor_type=return_tensors)

    def encode_items(self, item_ids: Sequence[int], return_tensors: str | None = "pt") -> BatchEncoding:
        """Tokenised item prompts (cached per item) with ``input_ids``, ``attention_mask`` and ``item_ids``."""
        item_ids = self._catalog().check_internal(item_ids)
        if not item_ids:
            raise ValueError("encode_items needs at least one item id.")
        missing = sorted({item for item in item_ids if item not in self._item_prompt_cache})
        if missing:
            encoded = self.tokenizer([self.render_item_prompt(item) for item in missing])["input_ids"]
            for item, ids in zip(missing, encoded):
                if len(ids) > self.max_prompt_length:
                    catalog = self._catalog()
                    [external_id] = catalog.to_external([item])
                    raise ValueError(
                        f"The item prompt of item {external_id!r} (internal id {item}, a title of "
                        f"{len(catalog.title(item)):,} characters) needs {len(ids)} tokens, more than "
                        f"max_prompt_length={self.max_prompt_length}; shorten its title or raise max_prompt_length."
                    )
                self._item_prompt_cache[item] = ids
        batch = self._pad([self._item_prompt_cache[item] for item in item_ids], return_tensors)
        data = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "item_ids": item_ids}
        return BatchEncoding(data, tensor_type=return_tensors)

    # ---------------------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """The processor's settings for ``processor_config.json`` (the catalog and tokenizer have their own files)."""
        output: dict[str, Any] = {name: getattr(self, name) for name in _SERIALIZED_FIELDS}
        output["processor_class"] = type(self).__name__
        if getattr(self, "auto_map", None):
            output["auto_map"] = dict(self.auto_map)
        return output

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any
    ) -> list[str]:
        """Write the tokenizer files, ``processor_config.json``, ``item_catalog.json`` and the processor's code."""
        files = list(super().save_pretrained(save_directory))
        if self._item_catalog is not None:
            files.append(self._item_catalog.save(save_directory))
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(os.fspath(save_directory))))
            self.push_to_hub(repo_id, **kwargs)
        return files

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        revision: str = "main",
        **kwargs: Any,
    ) -> LLMSRecProcessor:
        """Load the tokenizer, settings and item catalog saved by `save_pretrained` (local folder or Hub repo).

        A broken JSON file is a ValueError naming it (transformers' own errors name no file, or are OSErrors).
        """
        hub_kwargs = {
            "cache_dir": cache_dir, "local_files_only": local_files_only, "token": token, "revision": revision
        }

        def resolve(filename: str, **options: Any) -> str | None:
            return cached_file(
                pretrained_model_name_or_path, filename, subfolder=kwargs.get("subfolder", ""),
                _raise_exceptions_for_missing_entries=False, **hub_kwargs, **options,
            )

        try:
            processor = super().from_pretrained(
                pretrained_model_name_or_path, force_download=force_download, **hub_kwargs, **kwargs
            )
        except (OSError, ValueError):
            for filename in _PROCESSOR_JSON_FILES:
                if (resolved := resolve(filename, _raise_exceptions_for_connection_errors=False)) is not None:
                    read_json(resolved)
            raise
        catalog_file = resolve(ITEM_CATALOG_NAME, force_download=force_download)
        if catalog_file is not None:
            processor.item_catalog = ItemCatalog.load(catalog_file)
        return processor


__all__ = ["LLMSRecProcessor", "format_date"]
