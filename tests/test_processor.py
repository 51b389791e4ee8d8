"""LLMSRecProcessor and ItemCatalog: exact prompts, shuffled rendering, truncation, batching, save/load, errors."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoProcessor, AutoTokenizer

from llm_srec import ItemCatalog, LLMSRecConfig, LLMSRecProcessor

# 2021-03-04 and 2021-05-10 in UTC; the second one is 23:30 UTC, i.e. already May 11th east of Greenwich.
MARCH_4 = 1614859200
MAY_10_LATE = 1620689400


@pytest.fixture
def paper_processor(tiny_backbone_dir) -> LLMSRecProcessor:
    catalog = ItemCatalog(["a", "b", "c"], ["Title A", "Title B", None])
    return LLMSRecProcessor(AutoTokenizer.from_pretrained(tiny_backbone_dir("llama")), catalog)


def test_user_prompt_equals_the_official_template(paper_processor):
    prompt = paper_processor.render_user_prompt([1, 2], [MARCH_4, MAY_10_LATE])
    assert prompt == (
        "This user has made a series of purchases in the following order: "
        'Item No.1, Time: 2021-03-04, "Title A"[HistoryEmb],'
        'Item No.2, Time: 2021-05-10, "Title B"[HistoryEmb]. '
        "Based on this sequence of purchases, generate user representation token:[UserOut]"
    )


def test_prompts_without_time_and_missing_titles(paper_processor):
    assert paper_processor.render_user_prompt([3, 1]) == (
        "This user has made a series of purchases in the following order: "
        'Item No.1, "No Title"[HistoryEmb],Item No.2, "Title A"[HistoryEmb]. '
        "Based on this sequence of purchases, generate user representation token:[UserOut]"
    )
    # -1 marks an unknown time for that item only
    assert 'Item No.1, "Title A"[HistoryEmb],Item No.2, Time: 2021-03-04' in paper_processor.render_user_prompt(
        [1, 2], [-1, MARCH_4]
    )


def test_item_prompt_equals_the_official_template(paper_processor):
    assert paper_processor.render_item_prompt(2) == (
        'The item title and item embedding are as follows: "Title B"[HistoryEmb], '
        "then generate item representation token:[ItemOut]"
    )


def test_only_the_last_ten_items_are_shown_numbered_from_one(tiny_processor, tiny_catalog):
    history = list(range(1, 13))
    prompt = tiny_processor.render_user_prompt(history)
    assert prompt.count("[HistoryEmb]") == 10
    assert 'Item No.1, "Green Garden Hose"' in prompt  # item 3 is the oldest shown
    assert 'Item No.10, "Brown Leather Wallet"' in prompt  # item 12 is the newest
    assert tiny_catalog.title(1) not in prompt and tiny_catalog.title(2) not in prompt
    encoded = tiny_processor([history])
    assert encoded["history_item_ids"].tolist() == [list(range(3, 13))]


def test_shuffled_rendering_keeps_numbers_and_times_in_place(paper_processor):
    history, times = [1, 2, 3], [MARCH_4, MARCH_4 + 86400, MARCH_4 + 2 * 86400]
    order = [2, 0, 1]
    shuffled = paper_processor.render_user_prompt(history, times, order=order)
    assert shuffled == (
        "This user has made a series of purchases in the following order: "
        'Item No.1, Time: 2021-03-04, "No Title"[HistoryEmb],'
        'Item No.2, Time: 2021-03-05, "Title A"[HistoryEmb],'
        'Item No.3, Time: 2021-03-06, "Title B"[HistoryEmb]. '
        "Based on this sequence of purchases, generate user representation token:[UserOut]"
    )
    encoded = paper_processor([history], [times], orders=[order])
    assert encoded["history_item_ids"].tolist() == [[3, 1, 2]]


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_special_tokens_are_single_tokens_outside_the_backbone_vocabulary(kind, make_tiny_processor, tiny_backbone_dir):
    processor = make_tiny_processor(kind)
    vocabulary = json.loads((tiny_backbone_dir(kind) / "config.json").read_text())["vocab_size"]
    ids = {processor.history_token_id, processor.user_token_id, processor.item_token_id}
    assert len(ids) == 3 and min(ids) >= vocabulary  # added to the tokenizer only, never to the backbone
    assert processor.pad_token_id is not None and processor.pad_token_id < vocabulary
    encoded = processor([[1, 2, 3], [4]])
    for row, mask, items in zip(encoded["input_ids"], encoded["attention_mask"], encoded["history_item_ids"]):
        real = row[mask.bool()]
        assert (real == processor.user_token_id).sum() == 1
        assert (real == processor.history_token_id).sum() == (items > 0).sum()
    items = processor.encode_items([5, 6])
    assert ((items["input_ids"] == processor.item_token_id).sum(-1) == 1).all()
    assert ((items["input_ids"] == processor.history_token_id).sum(-1) == 1).all()
    assert items["item_ids"].tolist() == [5, 6]


def test_batch_padding_follows_the_tokenizer_side(tiny_processor):
    for side in ("left", "right"):
        tiny_processor.tokenizer.padding_side = side
        encoded = tiny_processor([[1, 2, 3, 4, 5], [6]])
        short_mask = encoded["attention_mask"][1]
        assert short_mask.sum() < short_mask.numel()
        assert (short_mask[0] == 0) if side == "left" else (short_mask[-1] == 0)
        assert encoded["history_item_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 0, 0, 0, 0]]
        as_lists = tiny_processor([[1, 2, 3, 4, 5], [6]], return_tensors=None)
        assert as_lists["input_ids"] == encoded["input_ids"].tolist()
        assert as_lists["history_item_ids"] == [[1, 2, 3, 4, 5], [6, 0, 0, 0, 0]]


def test_long_histories_drop_the_oldest_items_first(make_tiny_processor, tiny_config_factory):
    full = make_tiny_processor("llama")
    history = list(range(1, 11))
    full_length = len(full([history])["input_ids"][0])
    one_item = len(full([[10]])["input_ids"][0])
    budget = (full_length + one_item) // 2
    config = tiny_config_factory("llama", max_prompt_length=budget)
    processor = make_tiny_processor("llama", config)
    encoded = processor([history, [7]])
    ids, kept = encoded["input_ids"][0], encoded["history_item_ids"][0]
    shown = kept[kept > 0].tolist()
    assert len(ids[encoded["attention_mask"][0].bool()]) <= budget
    assert 1 <= len(shown) < 10 and shown == history[-len(shown) :]  # the most recent items survive
    assert (ids == processor.user_token_id).sum() == 1  # [UserOut] is never cut
    assert (ids == processor.history_token_id).sum() == len(shown)
    text = processor.tokenizer.decode(ids[encoded["attention_mask"][0].bool()])
    assert "Item No.1," in text and f"Item No.{len(shown) + 1}," not in text  # re-rendered, renumbered from 1
    assert encoded["history_item_ids"][1].tolist()[0] == 7


def test_a_budget_too_small_for_one_item_is_an_error(make_tiny_processor, tiny_config_factory):
    processor = make_tiny_processor("llama", tiny_config_factory("llama", max_prompt_length=8))
    with pytest.raises(ValueError, match="max_prompt_length=8 is too small"):
        processor([[1, 2]])
    with pytest.raises(ValueError, match=r"item prompt of item 'I00' \(internal id 1, a title of 14 characters\)"):
        processor.encode_items([1])


def test_a_one_item_prompt_over_the_budget_shortens_the_title(make_tiny_processor, tiny_config_factory, caplog):
    full = make_tiny_processor("llama")
    one_item = len(full([[3]])["input_ids"][0])
    budget = one_item - 2
    processor = make_tiny_processor("llama", tiny_config_factory("llama", max_prompt_length=budget))
    with caplog.at_level("WARNING"):
        encoded = processor([[1, 2, 3], [5]])
    assert "title of item 3 is shortened" in caplog.text
    ids = encoded["input_ids"][0][encoded["attention_mask"][0].bool()]
    assert budget - 3 <= len(ids) <= budget  # the longest title prefix that fits
    assert encoded["history_item_ids"][0].tolist()[:1] == [3]
    assert (ids == processor.user_token_id).sum() == 1 and (ids == processor.history_token_id).sum() == 1
    assert processor.tokenizer.decode(ids).count('"') == 2  # the title's quotes and the rest of the prompt remain


def test_save_load_roundtrip(tiny_processor, tmp_path):
    tiny_processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "item_catalog.json").read_text())["external_ids"][0] == "I00"
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["auto_map"] == {"AutoProcessor": "processing_llm_srec.LLMSRecProcessor"}
    assert saved["history_item_template"] == 'Item No.{number}, Time: {time}, "{title}"[HistoryEmb]'
    for loaded in (LLMSRecProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, LLMSRecProcessor)
        assert loaded.item_catalog == tiny_processor.item_catalog
        assert (loaded.history_token_id, loaded.user_token_id, loaded.item_token_id, loaded.pad_token_id) == (
            tiny_processor.history_token_id,
            tiny_processor.user_token_id,
            tiny_processor.item_token_id,
            tiny_processor.pad_token_id,
        )
        a, b = loaded([[1, 2, 3]], [[MARCH_4, MARCH_4, MARCH_4]]), tiny_processor([[1, 2, 3]], [[MARCH_4] * 3])
        assert all(torch.equal(a[key], b[key]) for key in ("input_ids", "attention_mask", "history_item_ids"))


def test_processor_follows_the_config(make_tiny_processor, tiny_config_factory):
    config = tiny_config_factory("llama", history_length=3, history_separator="; ")
    processor = make_tiny_processor("llama", config)
    prompt = processor.render_user_prompt([1, 2, 3, 4, 5])
    assert prompt.count("[HistoryEmb]") == 3 and '[HistoryEmb]; Item No.3, "Purple Yoga Mat"' in prompt


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p([[]]), "Empty history"),
        (lambda p: p([[1, 99]]), r"Unknown internal item ids \[99\]"),
        (lambda p: p([[1, 0]]), r"Unknown internal item ids \[0\]"),
        (lambda p: p([1, 2, 3]), "not a flat list"),
        (lambda p: p([]), "non-empty list"),
        (lambda p: p([[1, 2]], [[MARCH_4]]), "Got 1 timestamps for a history of 2 items"),
        (lambda p: p([[1, 2]], [[MARCH_4] * 2, []]), "Got 2 timestamps for 1 histories"),
        (lambda p: p.render_user_prompt([1, 2], order=[0, 0]), "permutation of range"),
        (lambda p: p([[1]], [[MARCH_4 * 1000]]), r"unix seconds.*\(milliseconds\?\)"),
        (lambda p: p.encode_items([17]), r"Unknown internal item ids \[17\]"),
    ],
)
def test_bad_input_raises_clear_errors(tiny_processor, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_processor)


def test_titles_holding_special_tokens_are_rejected(tiny_processor):
    with pytest.raises(ValueError, match=r"title of item 2 \('y'\) contains the special token"):
        tiny_processor.item_catalog = ItemCatalog(["x", "y"], ["fine", "evil [UserOut] title"])


def test_a_processor_without_catalog_says_so(tiny_backbone_dir):
    processor = LLMSRecProcessor(AutoTokenizer.from_pretrained(tiny_backbone_dir("gpt2")))
    assert processor.tokenizer.pad_token == processor.tokenizer.eos_token  # padding reuses eos: no new row
    with pytest.raises(ValueError, match="no item catalog"):
        processor.render_item_prompt(1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"history_item_template": 'Item No.{number}, "{title}"[HistoryEmb]'},
            r"missing the placeholder\(s\) \{time\}",
        ),
        ({"item_prompt_template": '"{name}"[HistoryEmb][ItemOut]'}, r"missing the placeholder\(s\) \{title\}"),
        (
            {"history_item_template_no_time": "{number} {title} {date}[HistoryEmb]"},
            r"unknown placeholder\(s\) \{date\}",
        ),
        ({"user_prompt_suffix": ". Generate a user token:"}, r"must contain \[UserOut\] exactly 1 time"),
        ({"item_prompt_template": '"{title}", then [ItemOut]'}, r"must contain \[HistoryEmb\] exactly 1 time"),
        ({"user_prompt_prefix": "History [HistoryEmb]: "}, r"user_prompt_prefix must contain \[HistoryEmb\] exactly 0"),
        ({"user_token": "[ItemOut]"}, "Special tokens must be distinct"),
    ],
)
def test_templates_missing_a_placeholder_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        LLMSRecConfig(**overrides)


def test_catalog_mapping_and_errors(tmp_path):
    catalog = ItemCatalog(["x", "y", "z"], ["X", "", "Z"])
    assert len(catalog) == 3
    assert catalog.to_internal(["z", "x"]) == [3, 1]
    assert catalog.to_external([1, 3]) == ["x", "z"]
    assert catalog.title(2) == "No Title"
    assert ItemCatalog.load(catalog.save(tmp_path)) == catalog
    assert ItemCatalog.load(tmp_path) == catalog
    with pytest.raises(ValueError, match=r"Unknown external item ids: \['w', 'v'\]"):
        catalog.to_internal(["x", "w", "v"])
    with pytest.raises(ValueError, match=r"Unknown internal item ids \[4\]"):
        catalog.to_external([4])
    with pytest.raises(ValueError, match=r"Duplicate external item ids in the catalog: \['x'\]"):
        ItemCatalog(["x", "y", "x"], ["1", "2", "3"])
    with pytest.raises(ValueError, match="one title per item"):
        ItemCatalog(["x"], ["1", "2"])
    with pytest.raises(ValueError, match="must be strings"):
        ItemCatalog([1, 2], ["1", "2"])


def test_histories_may_be_tuples_or_tensors(tiny_processor):
    as_lists = tiny_processor([[1, 2, 3], [4, 5]], [[MARCH_4] * 3, []])
    as_other = tiny_processor([(1, 2, 3), torch.tensor([4, 5])], [torch.tensor([MARCH_4] * 3), None])
    assert all(torch.equal(as_lists[key], as_other[key]) for key in ("input_ids", "attention_mask", "history_item_ids"))
