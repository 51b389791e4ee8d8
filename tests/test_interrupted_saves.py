"""Interrupted saves: a model folder is written next to its place and renamed in, so a save that fails midway leaves
the previous folder (or none); loads name the missing or corrupt file; `--resume` falls back to the newest complete
checkpoint when a killed save left a newer one half written."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
import torch

from llm_srec import LLMSRecForRecommendation, SASRecModel
from llm_srec.cli import CLIError
from llm_srec.cli._training import check_output_dir
from llm_srec.modeling import modeling_llm_srec
from llm_srec.modeling.saving_llm_srec import recover_interrupted_save
from llm_srec.modeling.processing_llm_srec import LLMSRecProcessor
from llm_srec.training import SASRecTrainer, SASRecTrainingArguments, checkpointing
from llm_srec.training import trainer as trainer_module
from llm_srec.training.pipeline import load_model, pretrain_sasrec
from test_training import NEGATIVES, Crash, CrashAfterSave, make_teacher, small_data  # noqa: F401

INCOMPLETE = "is incomplete: missing {} (an interrupted save?)"
CORRUPT = "is not a valid safetensors file (truncated or corrupt?)"


class Interrupted(Exception):
    """Stands for the process dying in the middle of a save."""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Staging or swapped-out folders of saves into ``folder`` that were left behind."""
    beside = [entry.name for entry in folder.parent.iterdir() if entry.name.startswith(f".{folder.name}.")]
    inside = [entry.name for entry in folder.iterdir() if entry.name.startswith(".")] if folder.is_dir() else []
    return beside + inside


def perturb(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.5)


def raise_after(function, error=Interrupted):
    """``function`` that does its work, then raises (the process dies right after writing that file)."""

    def wrapper(*args, **kwargs):
        function(*args, **kwargs)
        raise error

    return wrapper


# ------------------------------------------------------------------------------------------------ atomic saves
@pytest.mark.parametrize("failing", ["weights", "processor"])
def test_an_llm_srec_save_that_fails_midway_leaves_the_previous_folder_intact(tiny_model, tmp_path, monkeypatch,
                                                                             failing):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "notes.txt").write_text("kept")
    before = snapshot(folder)
    perturb(tiny_model)
    if failing == "weights":  # model.safetensors is written, then the process dies
        monkeypatch.setattr(modeling_llm_srec, "save_file", raise_after(modeling_llm_srec.save_file))
    else:
        monkeypatch.setattr(LLMSRecProcessor, "save_pretrained", raise_after(LLMSRecProcessor.save_pretrained))
    with pytest.raises(Interrupted):
        tiny_model.save_pretrained(folder)
    assert snapshot(folder) == before and leftovers(folder) == []

    with pytest.raises(Interrupted):  # a first save into a new folder leaves no folder at all
        tiny_model.save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists() and leftovers(tmp_path / "new") == []

    monkeypatch.undo()
    tiny_model.save_pretrained(folder)
    loaded = LLMSRecForRecommendation.from_pretrained(folder)
    torch.testing.assert_close(loaded.user_out_embedding, tiny_model.user_out_embedding)
    assert (folder / "checkpoints" / "notes.txt").read_text() == "kept" and leftovers(folder) == []


def test_a_save_replaces_the_previous_models_files_and_keeps_the_rest(tiny_model, tmp_path):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    (folder / "metrics.json").write_text("{}")  # the previous model's: stale for the new one
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")
    os.chmod(folder, 0o750)
    tiny_model.processor = None
    tiny_model.save_pretrained(folder)
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "checkpoints", "notes.txt"} <= names
    assert not names & {"metrics.json", "processor_config.json", "item_catalog.json", "tokenizer.json"}
    assert (folder / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert os.stat(folder).st_mode & 0o777 == 0o750
    assert LLMSRecForRecommendation.from_pretrained(folder).processor is None  # saved without one: nothing missing


def test_a_sasrec_save_that_fails_midway_leaves_the_previous_folder_intact(tiny_sasrec, tmp_path, monkeypatch):
    import transformers.modeling_utils

    folder = tmp_path / "sasrec"
    tiny_sasrec.save_pretrained(folder)
    before = snapshot(folder)
    perturb(tiny_sasrec)
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file",
                        raise_after(transformers.modeling_utils.safe_save_file))
    with pytest.raises(Interrupted):
        tiny_sasrec.save_pretrained(folder)
    assert snapshot(folder) == before and leftovers(folder) == []
    monkeypatch.undo()
    tiny_sasrec.save_pretrained(folder)
    torch.testing.assert_close(SASRecModel.from_pretrained(folder).item_embeddings, tiny_sasrec.item_embeddings)


def test_a_folder_that_cannot_be_renamed_gets_its_files_replaced_one_by_one(tiny_sasrec, tmp_path, monkeypatch):
    """The working directory (or a mount point) is not renamed: the new files are staged inside it and moved in."""
    import transformers.modeling_utils

    folder = tmp_path / "here"
    tiny_sasrec.save_pretrained(folder)
    (folder / "notes.txt").write_text("mine")
    (folder / "metrics.json").write_text("{}")
    monkeypatch.chdir(folder)
    before = snapshot(folder)
    perturb(tiny_sasrec)
    with monkeypatch.context() as patch:
        patch.setattr(transformers.modeling_utils, "safe_save_file",
                      raise_after(transformers.modeling_utils.safe_save_file))
        with pytest.raises(Interrupted):
            tiny_sasrec.save_pretrained(".")
    assert snapshot(folder) == before and leftovers(folder) == []
    tiny_sasrec.save_pretrained(".")
    assert Path.cwd() == folder.resolve() and leftovers(folder) == []
    assert (folder / "notes.txt").read_text() == "mine" and not (folder / "metrics.json").exists()
    torch.testing.assert_close(SASRecModel.from_pretrained(folder).item_embeddings, tiny_sasrec.item_embeddings)


def test_a_save_killed_between_its_renames_is_finished_or_undone(tiny_sasrec, tmp_path):
    folder = tmp_path / "model"
    tiny_sasrec.save_pretrained(folder)
    before = snapshot(folder)
    # killed after the previous folder was renamed aside, before the new one came in: it is put back
    os.rename(folder, tmp_path / ".model.replaced-1234")
    (tmp_path / ".model.saving-5678").mkdir()  # the half-written new folder
    recover_interrupted_save(folder)
    assert snapshot(folder) == before and leftovers(folder) == []
    # killed after the new folder came in, before the kept entries moved over: they are moved
    previous = tmp_path / ".model.replaced-9999"
    (previous / "checkpoints").mkdir(parents=True)
    (previous / "config.json").write_text("{}")
    tiny_sasrec.save_pretrained(folder)  # recovers first, then saves
    assert (folder / "checkpoints").is_dir() and leftovers(folder) == []
    assert json.loads((folder / "config.json").read_text())["model_type"] == "sasrec"


def test_a_checkpoint_whose_save_fails_midway_is_not_left_behind(small_data, tmp_path, monkeypatch):  # noqa: F811
    args = SASRecTrainingArguments(output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=16,
                                   num_eval_negatives=NEGATIVES, use_cpu=True, disable_tqdm=True, report_to="none")
    trainer = SASRecTrainer(make_teacher(), args, train_dataset=small_data.splits["train"],
                            eval_dataset=small_data.splits["validation"])
    # the model files are written, then the process dies while the card is written
    monkeypatch.setattr(trainer_module, "write_model_card", raise_after(trainer_module.write_model_card))
    with pytest.raises(Interrupted):
        trainer.train()
    assert [entry.name for entry in tmp_path.iterdir()] == []


# ------------------------------------------------------------------------------------------------ loading checks
@pytest.mark.parametrize("name", ["processor_config.json", "item_catalog.json", "tokenizer.json",
                                  "tokenizer_config.json"])
def test_a_folder_missing_a_processor_file_fails_to_load_naming_it(tiny_model, tiny_processor, tmp_path, name):
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path} " + INCOMPLETE.format(name))):
        LLMSRecForRecommendation.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"missing {name}"):
        load_model(tmp_path)
    assert LLMSRecForRecommendation.from_pretrained(tmp_path, processor=None).processor is None
    attached = LLMSRecForRecommendation.from_pretrained(tmp_path, processor=tiny_processor)
    assert attached.processor is tiny_processor
    with pytest.raises(ValueError, match="processor must be"):
        LLMSRecForRecommendation.from_pretrained(tmp_path, processor="mine")


def test_a_folder_saved_before_the_processor_was_recorded_still_needs_its_processor(tiny_model, tmp_path):
    """An older save records no processor_files: the config's special-token ids tell that a processor was attached,
    so config + weights alone (the old interrupted final save) are reported incomplete."""
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["processor_files"]
    config.update(history_token_id=5, user_token_id=6, item_token_id=7, llm_pad_token_id=1)  # as 0.1.0 recorded them
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert LLMSRecForRecommendation.from_pretrained(tmp_path).processor is not None
    for name in ("processor_config.json", "item_catalog.json"):
        (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(INCOMPLETE.format(
            "processor_config.json, item_catalog.json"))):
        LLMSRecForRecommendation.from_pretrained(tmp_path)


def test_a_truncated_processor_file_is_named(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    text = (tmp_path / "item_catalog.json").read_text()
    (tmp_path / "item_catalog.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"item_catalog.json is not valid JSON \(truncated or corrupt\?\)"):
        LLMSRecForRecommendation.from_pretrained(tmp_path)


def corrupt(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-10])
    elif how == "garbage":
        path.write_bytes(os.urandom(1000))
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["missing", "truncated", "garbage", "empty"])
def test_a_bad_weights_file_gives_one_clear_line(tiny_model, tiny_sasrec, tmp_path, how):
    tiny_model.save_pretrained(tmp_path / "llm_srec")
    tiny_sasrec.save_pretrained(tmp_path / "sasrec")
    loaders = (("llm_srec", LLMSRecForRecommendation.from_pretrained), ("sasrec", SASRecModel.from_pretrained))
    for kind, load in loaders:
        folder = tmp_path / kind
        corrupt(folder / "model.safetensors", how)
        if how == "missing":
            expected, message = FileNotFoundError, f"{folder} " + INCOMPLETE.format("model.safetensors")
        else:
            expected, message = ValueError, f"{folder / 'model.safetensors'} {CORRUPT}"
        for loader in (load, load_model):
            with pytest.raises(expected) as raised:
                loader(folder)
            assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
            assert raised.value.__cause__ is None


def test_a_folder_without_config_is_incomplete(tiny_model, tiny_sasrec, tmp_path):
    loaders = ((tiny_model, LLMSRecForRecommendation.from_pretrained), (tiny_sasrec, SASRecModel.from_pretrained))
    for model, load in loaders:
        folder = tmp_path / type(model).__name__
        model.save_pretrained(folder)
        (folder / "config.json").unlink()
        with pytest.raises(FileNotFoundError, match=re.escape(f"{folder} " + INCOMPLETE.format("config.json"))):
            load(folder)


# ------------------------------------------------------------------------------------------------------ resuming
def sasrec_args(output_dir: Path) -> SASRecTrainingArguments:
    return SASRecTrainingArguments(
        output_dir=str(output_dir), num_train_epochs=3, per_device_train_batch_size=16, num_eval_negatives=NEGATIVES,
        use_cpu=True, disable_tqdm=True, report_to="none", seed=0, save_total_limit=None, lr_scheduler_type="linear",
    )


def test_the_completeness_of_a_checkpoint(small_data, tmp_path):  # noqa: F811
    checkpoints = tmp_path / "checkpoints"
    trainer = SASRecTrainer(make_teacher(), sasrec_args(checkpoints), train_dataset=small_data.splits["train"],
                            eval_dataset=small_data.splits["validation"])
    trainer.train()  # 3 steps per epoch: checkpoint-3, -6, -9
    complete, incomplete = checkpointing.survey_checkpoints(checkpoints)
    assert [Path(path).name for path in complete] == ["checkpoint-9", "checkpoint-6", "checkpoint-3"]
    assert incomplete == [] and checkpointing.checkpoint_step(complete[0]) == 9
    (checkpoints / "checkpoint-9" / "trainer_state.json").unlink()
    state = checkpoints / "checkpoint-6" / "trainer_state.json"
    state.write_text(state.read_text()[:50])
    corrupt(checkpoints / "checkpoint-3" / "optimizer.safetensors", "truncated")
    problems = dict(checkpointing.survey_checkpoints(checkpoints)[1])
    assert problems[str(checkpoints / "checkpoint-9")] == "no trainer_state.json"
    assert problems[str(checkpoints / "checkpoint-6")].startswith("trainer_state.json is truncated or corrupt")
    assert CORRUPT in problems[str(checkpoints / "checkpoint-3")]
    with pytest.raises(ValueError, match="No complete checkpoint to resume from .*checkpoint-9: no trainer_state"):
        checkpointing.find_resumable_checkpoint(checkpoints)
    with pytest.raises(CLIError, match="no complete checkpoint .*; nothing to resume; checkpoint-9 is incomplete"):
        check_output_dir(tmp_path, resume=True)


def test_resume_skips_a_newest_checkpoint_left_incomplete_and_continues_exactly(
    small_data, tmp_path, caplog  # noqa: F811
):
    def trainer(output_dir: Path, callbacks=()) -> SASRecTrainer:
        return SASRecTrainer(make_teacher(), sasrec_args(output_dir), train_dataset=small_data.splits["train"],
                             eval_dataset=small_data.splits["validation"], callbacks=list(callbacks))

    uninterrupted = trainer(tmp_path / "a")
    uninterrupted.train()

    killed = trainer(tmp_path / "b", [CrashAfterSave(6)])
    with pytest.raises(Crash):
        killed.train()
    (tmp_path / "b" / "checkpoint-6" / "trainer_state.json").unlink()  # killed before trainer_state.json was written
    resumed = trainer(tmp_path / "b")
    with caplog.at_level(logging.INFO, logger="llm_srec.training.checkpointing"):
        resumed.train(resume_from_checkpoint=True)
    assert "Skipping the incomplete checkpoint" in caplog.text and "checkpoint-6" in caplog.text
    assert f"Resuming from {tmp_path / 'b' / 'checkpoint-3'} (step 3)" in caplog.text
    assert resumed.state.global_step == 9
    assert checkpointing.checkpoint_problem(tmp_path / "b" / "checkpoint-6") is None  # written again, complete
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, uninterrupted.model.state_dict()[key], rtol=0, atol=1e-6, msg=key)


def test_pretrain_resume_prints_the_checkpoint_it_falls_back_to(small_data, tmp_path, capsys):  # noqa: F811
    output = tmp_path / "sasrec"
    config = dict(hidden_size=16, num_hidden_layers=1, max_position_embeddings=12)
    first = pretrain_sasrec(small_data, output, sasrec_args(output / "checkpoints"), config=config,
                            evaluate_test=False)
    newest = output / "checkpoints" / "checkpoint-9"
    corrupt(newest / "model.safetensors", "truncated")  # killed while the weights were written
    (newest / "trainer_state.json").unlink()
    check_output_dir(output, resume=True)  # a complete checkpoint remains: --resume is accepted
    capsys.readouterr()
    resumed = pretrain_sasrec(small_data, output, sasrec_args(output / "checkpoints"), config=config,
                              evaluate_test=False, resume_from_checkpoint=True)
    assert f"Resuming from {output / 'checkpoints' / 'checkpoint-6'} (step 6)" in capsys.readouterr().out
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, first.state_dict()[key], rtol=0, atol=1e-6, msg=key)
    assert (output / "checkpoints").is_dir() and checkpointing.checkpoint_problem(newest) is None
    assert leftovers(output) == [] and SASRecModel.from_pretrained(output).config.hidden_size == 16
