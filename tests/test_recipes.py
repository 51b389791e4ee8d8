"""Recipe options of the loss (score distillation, in-batch negatives, cosine scores, item distillation, the fixed
teacher projection), the named recipes, and the oracle capacity check they are measured with."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY_HEAD_SIZES, TINY_TITLES
from llm_srec import LLMSRecConfig, SASRecConfig, SASRecModel, build_tiny_backbone
from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic
from llm_srec.evaluation.oracle import attach_oracle, detach_oracle, left_align_to_right
from llm_srec.evaluation.ranking import RankingEvaluator
from llm_srec.modeling.modeling_llm_srec import TeacherIsometry
from llm_srec.training import LLMSRecTrainer, LLMSRecTrainingArguments
from llm_srec.training.pipeline import build_llm_srec
from llm_srec.training.recipes import DEFAULT_RECIPE, RECIPES, get_recipe


@pytest.fixture
def task_batch(tiny_model, ordered_task, make_training_batch):
    return make_training_batch(tiny_model, ordered_task["histories"], ordered_task["targets"], ordered_task["negatives"])


def with_options(model, **options):
    for name, value in options.items():
        setattr(model.config, name, value)
    return model


# ---------------------------------------------------------------------------------------------------- options
def test_paper_options_leave_the_loss_as_the_paper_defines_it(tiny_model, task_batch):
    with torch.no_grad():
        out = tiny_model(**task_batch)
    users, teachers = F.normalize(out.user_embeddings, dim=-1), F.normalize(out.teacher_embeddings, dim=-1)
    retrieval = F.cross_entropy(out.logits, task_batch["labels"])
    distill = F.mse_loss(users, teachers)
    uniform = sum(torch.pdist(x).pow(2).mul(-2).exp().mean() for x in (users, teachers))
    torch.testing.assert_close(out.loss, retrieval + distill + uniform)
    assert out.score_distillation_loss is None and out.item_distillation_loss is None


def test_score_distillation_is_the_kl_to_the_teachers_own_scores(tiny_model, task_batch):
    with_options(tiny_model, score_distillation_loss_weight=1.0, retrieval_loss_weight=0.0,
                 distillation_loss_weight=0.0, uniformity_loss_weight=0.0, score_distillation_temperature=2.0)
    with torch.no_grad():
        out = tiny_model(**task_batch)
        teacher = tiny_model.sasrec.score(task_batch["sasrec_input_ids"], task_batch["candidate_item_ids"]) / 2.0
    expected = F.kl_div(F.log_softmax(out.logits, -1), F.log_softmax(teacher, -1), log_target=True,
                        reduction="batchmean")
    torch.testing.assert_close(out.score_distillation_loss, expected)
    torch.testing.assert_close(out.loss, expected)
    assert out.score_distillation_loss > 0


def test_score_distillation_gradient_moves_the_student_toward_the_teacher_ranking(tiny_model, task_batch):
    with_options(tiny_model, score_distillation_loss_weight=1.0, retrieval_loss_weight=0.0,
                 distillation_loss_weight=0.0, uniformity_loss_weight=0.0)
    tiny_model.train()
    optimizer = torch.optim.Adam([p for p in tiny_model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(25):
        loss = tiny_model(**task_batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_in_batch_negatives_rank_every_batch_candidate_and_mask_false_negatives(tiny_model, task_batch):
    batch = {key: value[:3] if value.shape[0] == 16 else value for key, value in task_batch.items()}
    batch["candidate_input_ids"] = task_batch["candidate_input_ids"][:12]
    batch["candidate_attention_mask"] = task_batch["candidate_attention_mask"][:12]
    batch["candidate_item_ids"] = batch["candidate_item_ids"].clone()
    batch["candidate_item_ids"][1, 2] = batch["candidate_item_ids"][0, 0]  # user 0's target as user 1's negative
    history_item = int(batch["sasrec_input_ids"][2, -1])
    batch["candidate_item_ids"][0, 3] = history_item  # one of user 2's history items
    with_options(tiny_model, in_batch_negatives=True)
    with torch.no_grad():
        out = tiny_model(**batch)
        logits, items, labels, valid = tiny_model._ranked_candidates(
            out.logits, out.user_embeddings, out.item_embeddings, batch["candidate_item_ids"], batch["labels"],
            batch["sasrec_input_ids"], batch["history_item_ids"],
        )
    assert logits.shape == (3, 12) and labels.tolist() == [0, 4, 8]
    torch.testing.assert_close(logits, out.user_embeddings @ out.item_embeddings.reshape(12, -1).t())
    assert valid[0].tolist().count(False) >= 1 and not valid[0, 6]  # user 0's target reused by user 1: masked
    assert valid[0, 0] and valid[1, 4] and valid[2, 8]  # each user's own target stays
    assert not valid[2, 3]  # an item of user 2's history is not its negative
    expected = F.cross_entropy(logits.masked_fill(~valid, float("-inf")), labels)
    torch.testing.assert_close(out.retrieval_loss, expected)


def test_cosine_similarity_normalises_every_scored_vector_and_divides_by_the_temperature(tiny_model, task_batch):
    with_options(tiny_model, similarity="cosine", retrieval_temperature=0.1)
    with torch.no_grad():
        out = tiny_model(**task_batch)
        users = tiny_model.encode_users(task_batch["input_ids"], task_batch["attention_mask"],
                                        task_batch["history_item_ids"])
        index = tiny_model.refresh_item_index()
    for vectors in (out.user_embeddings, out.item_embeddings, users, index):
        torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(vectors.shape[:-1]))
    assert out.logits.abs().max() <= 1 + 1e-5
    torch.testing.assert_close(out.retrieval_loss, F.cross_entropy(out.logits / 0.1, task_batch["labels"]))


def test_fixed_teacher_projection_keeps_the_teachers_dot_products(make_tiny_model, task_batch):
    model = make_tiny_model("llama", teacher_projection="fixed")
    assert isinstance(model.cf_user_head, TeacherIsometry)
    assert not any(name.startswith("cf_user_head") for name in model.checkpoint_state_dict())
    with torch.no_grad():
        users = model.cf_user_head(model._teacher_states(task_batch["sasrec_input_ids"]))
        items = model.cf_user_head(model.sasrec.item_embeddings[task_batch["candidate_item_ids"]])
        expected = model.sasrec.score(task_batch["sasrec_input_ids"], task_batch["candidate_item_ids"])
    torch.testing.assert_close(torch.einsum("bd,bcd->bc", users, items), expected)
    with pytest.raises(ValueError, match="embedding_size"):
        make_tiny_model("llama", teacher_projection="fixed", embedding_size=8)


def test_item_distillation_pulls_item_vectors_toward_the_teacher_projection(make_tiny_model, task_batch):
    model = make_tiny_model("llama", item_distillation_loss_weight=1.0, teacher_projection="fixed")
    with torch.no_grad():
        out = model(**task_batch)
        targets = model.cf_user_head(model.sasrec.item_embeddings[task_batch["candidate_item_ids"].reshape(-1)])
    expected = F.mse_loss(F.normalize(out.item_embeddings.reshape(-1, 16), dim=-1), F.normalize(targets, dim=-1))
    torch.testing.assert_close(out.item_distillation_loss, expected)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"similarity": "euclid"}, "similarity"),
        ({"teacher_projection": "linear"}, "teacher_projection"),
        ({"retrieval_temperature": 0}, "retrieval_temperature"),
        ({"score_distillation_loss_weight": -1}, "score_distillation_loss_weight"),
        ({"in_batch_negatives": "yes"}, "in_batch_negatives"),
        ({"recipe": ""}, "recipe"),
    ],
)
def test_bad_recipe_options_are_rejected_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        LLMSRecConfig(**options)


# ---------------------------------------------------------------------------------------------------- recipes
def test_named_recipes_build_configs_and_arguments():
    assert DEFAULT_RECIPE in RECIPES and {"paper", "transfer"} <= set(RECIPES)
    paper = LLMSRecConfig(**get_recipe("paper").config_kwargs())
    assert paper.recipe == "paper"
    assert (paper.retrieval_loss_weight, paper.distillation_loss_weight, paper.uniformity_loss_weight) == (1, 1, 1)
    assert (paper.similarity, paper.in_batch_negatives, paper.score_distillation_loss_weight) == ("dot", False, 0)
    transfer = LLMSRecConfig(**get_recipe("transfer").config_kwargs({"history_length": 5}))
    assert transfer.recipe == "transfer" and transfer.history_length == 5
    assert transfer.score_distillation_loss_weight > 0 and transfer.in_batch_negatives
    arguments = get_recipe("paper").training_arguments(output_dir="unused")
    assert (arguments.learning_rate, arguments.per_device_train_batch_size) == (1e-4, 20)
    assert LLMSRecConfig.from_dict(transfer.to_dict()).score_distillation_loss_weight == transfer.score_distillation_loss_weight
    with pytest.raises(ValueError, match="unknown recipe 'fast'.*paper"):
        get_recipe("fast")


def test_training_logs_every_enabled_loss_term(tmp_path, tiny_backbone_dir):
    data = build_recommendation_data(generate_synthetic(
        SyntheticConfig(num_users=24, num_items=30, min_length=5, max_length=8, cycle_length=10, noise=0.1)))
    torch.manual_seed(0)
    teacher = SASRecModel(SASRecConfig(num_items=30, hidden_size=16, num_hidden_layers=1, max_position_embeddings=12))
    model = build_llm_srec(data, teacher, tiny_backbone_dir("llama"),
                           {**TINY_HEAD_SIZES, "history_length": 5, **get_recipe("transfer").config_kwargs(),
                            "item_distillation_loss_weight": 1.0})
    args = LLMSRecTrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8,
                                    eval_strategy="no", save_strategy="no", eval_every_epoch_fraction=None,
                                    load_best_model_at_end=False, early_stopping_patience=None, logging_steps=1,
                                    use_cpu=True, disable_tqdm=True, report_to="none")
    trainer = LLMSRecTrainer(model, args, train_dataset=data.splits["train"])
    trainer.train()
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert logged and all(
        {"retrieval_loss", "distillation_loss", "uniformity_loss", "score_distillation_loss",
         "item_distillation_loss"} <= set(row) for row in logged
    )
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in logged)


# ----------------------------------------------------------------------------------------------------- oracle
@pytest.fixture(scope="module")
def oracle_setup(tmp_path_factory):
    """Data whose histories fit the prompt and the teacher's window, a trained-free random teacher of hidden 16, and
    a backbone of hidden 16 so the heads read teacher-sized vectors."""
    data = build_recommendation_data(generate_synthetic(
        SyntheticConfig(num_users=60, num_items=30, min_length=5, max_length=8, cycle_length=10, noise=0.0)))
    torch.manual_seed(0)
    teacher = SASRecModel(SASRecConfig(num_items=30, hidden_size=16, num_hidden_layers=1,
                                       max_position_embeddings=12)).eval()
    backbone = build_tiny_backbone("llama", TINY_TITLES, tmp_path_factory.mktemp("oracle-backbone"), hidden_size=16,
                                   num_attention_heads=2, seed=0)
    return data, teacher, backbone


def identity_heads(model) -> None:
    """Heads that pass the 16-dim oracle states through unchanged."""
    for name in ("user_head", "item_head"):
        linear = nn.Linear(16, 16, bias=False)
        nn.init.eye_(linear.weight)
        setattr(model, name, nn.Sequential(linear))


def test_oracle_with_identity_heads_reproduces_the_teachers_metrics(oracle_setup):
    data, teacher, backbone = oracle_setup
    model = build_llm_srec(data, copy.deepcopy(teacher), backbone,
                           {**TINY_HEAD_SIZES, "history_length": 10, "max_prompt_length": 512})
    attach_oracle(model, "teacher")
    identity_heads(model)
    model.llm.forward = None  # the oracle never runs the backbone: calling it would fail
    evaluator = RankingEvaluator(data.splits["test"], data.num_items, ("sampled", "full"), num_negatives=10, seed=0)
    oracle_metrics = evaluator.evaluate(model, show_progress=False)
    teacher_metrics = evaluator.evaluate(teacher, show_progress=False)
    assert set(oracle_metrics) == set(teacher_metrics) == {"sampled(1+10, seed=0)", "full-catalog"}
    for protocol, metrics in teacher_metrics.items():
        assert oracle_metrics[protocol] == pytest.approx(metrics)
    assert oracle_metrics["sampled(1+10, seed=0)"]["NDCG@10"] != evaluator.random_ranker()["sampled(1+10, seed=0)"]["NDCG@10"]

    attach_oracle(model, "bag")  # the order-blind control ranks differently from the teacher
    bag_metrics = evaluator.evaluate(model, show_progress=False)
    assert any(bag_metrics[protocol] != pytest.approx(metrics) for protocol, metrics in teacher_metrics.items())


def test_oracle_features_are_the_teachers_vectors_and_detach_restores_the_backbone(oracle_setup):
    data, teacher, backbone = oracle_setup
    model = build_llm_srec(data, copy.deepcopy(teacher), backbone, {**TINY_HEAD_SIZES, "max_prompt_length": 512})
    history = [[3, 4, 5], [7, 8, 9, 10, 11]]
    batch = model.processor(history)
    plain = model._user_hidden_states(batch["input_ids"], batch["attention_mask"], batch["history_item_ids"])
    attach_oracle(model, "teacher")
    states = model._user_hidden_states(batch["input_ids"], batch["attention_mask"], batch["history_item_ids"])
    expected = model.sasrec.encode_users(torch.tensor([[0, 0, 3, 4, 5], [7, 8, 9, 10, 11]]))
    torch.testing.assert_close(states, expected)
    attach_oracle(model, "bag")
    bag = model._user_hidden_states(batch["input_ids"], batch["attention_mask"], batch["history_item_ids"])
    torch.testing.assert_close(bag[0], model.sasrec.item_embeddings[[3, 4, 5]].mean(0))
    detach_oracle(model)
    again = model._user_hidden_states(batch["input_ids"], batch["attention_mask"], batch["history_item_ids"])
    torch.testing.assert_close(again, plain)
    assert left_align_to_right(torch.tensor([[3, 4, 0, 0]])).tolist() == [[0, 0, 3, 4]]


def test_oracle_refuses_a_backbone_of_another_width(tiny_model):
    with pytest.raises(ValueError, match="hidden size 16"):
        attach_oracle(tiny_model, "teacher")
    with pytest.raises(ValueError, match="oracle features"):
        from llm_srec.evaluation.oracle import TeacherOracle

        TeacherOracle(tiny_model.sasrec, "average")


def test_cli_train_takes_a_recipe_and_prints_one_readable_line_per_log(tmp_path, capsys):
    import json

    from llm_srec.cli import main

    data = tmp_path / "data"
    build_recommendation_data(generate_synthetic(
        SyntheticConfig(num_users=30, num_items=30, min_length=5, max_length=8, cycle_length=10, noise=0.1)
    )).save_to_disk(data)
    titles = json.loads((data / "catalog" / "item_catalog.json").read_text())["titles"]
    build_tiny_backbone("llama", titles, tmp_path / "backbone", seed=0)
    assert main(["pretrain-sasrec", "--data", str(data), "--output-dir", str(tmp_path / "sasrec"), "--epochs", "1",
                 "--hidden-size", "16", "--num-layers", "1", "--maxlen", "12", "--eval-negatives", "10",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--sasrec", str(tmp_path / "sasrec"), "--backbone",
                 str(tmp_path / "backbone"), "--output-dir", str(tmp_path / "model"), "--recipe", "transfer",
                 "--max-steps", "2", "--batch-size", "8", "--eval-fraction", "0.5", "--eval-negatives", "10",
                 "--logging-steps", "1", "--no-progress", "--history-length", "5", "--embedding-size", "16",
                 "--head-hidden-size", "32", "--cf-hidden-size", "16"]) == 0
    out = capsys.readouterr().out
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["recipe"] == "transfer" and config["in_batch_negatives"] and config["similarity"] == "cosine"
    card = (tmp_path / "model" / "README.md").read_text()
    assert "- **Training recipe:** `transfer`, which departs from the paper's losses" in card
    assert "{'loss'" not in out and "{'eval_" not in out  # no raw Trainer log dicts
    assert "step 1/2 (epoch" in out and "= retrieval" in out and "score-distill" in out
    assert "eval step 2/2" in out and "sampled(1+10, seed=0) NDCG@10" in out and "full-catalog NDCG@10" in out


def test_teacher_negatives_are_the_teachers_top_items_outside_history_and_random_candidates(tiny_model):
    from llm_srec.data import LLMSRecCollator

    teacher = tiny_model.sasrec
    collator = LLMSRecCollator(tiny_model.processor, sasrec_maxlen=20, num_negatives=3, seed=0, teacher=teacher,
                               num_teacher_negatives=2)
    features = [{"user_index": 0, "history": [1, 2, 3], "history_timestamps": [], "target": 4},
                {"user_index": 1, "history": [5, 6], "history_timestamps": [], "target": 7}]
    batch = collator(features)
    candidates = batch["candidate_item_ids"]
    assert candidates.shape == (2, 6) and batch["candidate_input_ids"].shape[0] == 12
    for row, feature in enumerate(features):
        scores = teacher.score(torch.tensor([[0] * 17 + feature["history"]][:1]))[0]
        scores[[*feature["history"], feature["target"], *candidates[row, 1:4].tolist(), 0]] = float("-inf")
        assert candidates[row, 4:].tolist() == scores.topk(2).indices.tolist()
        assert not set(candidates[row, 1:].tolist()) & {*feature["history"], feature["target"]}
    with pytest.raises(ValueError, match="needs a teacher"):
        LLMSRecCollator(tiny_model.processor, num_teacher_negatives=2)
