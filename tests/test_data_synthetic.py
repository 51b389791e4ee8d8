"""The synthetic generator: readable titles, reproducibility, and a next item that really depends on ORDER."""

from __future__ import annotations

from collections import Counter, defaultdict

from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic, shuffle_histories
from llm_srec.data.synthetic import successor_table, synthetic_titles


def successor_oracle(data):
    """Most frequent successor of each item in the training sequences (learned, not read from the generator)."""
    counts: dict[int, Counter] = defaultdict(Counter)
    for sequence in data.sequences("train"):
        for current, following in zip(sequence[:-1].tolist(), sequence[1:].tolist()):
            counts[current][following] += 1
    return {item: c.most_common(1)[0][0] for item, c in counts.items()}


def hit_rate(split, oracle) -> float:
    hits = [oracle.get(row["history"][-1]) == row["target"] for row in split]
    return sum(hits) / len(hits)


def test_next_item_depends_on_order_not_on_the_set():
    data = build_recommendation_data(generate_synthetic(SyntheticConfig(num_users=800, num_items=150, noise=0.2)))
    oracle = successor_oracle(data)
    original = hit_rate(data.splits["test"], oracle)
    shuffled = hit_rate(shuffle_histories(data.splits["test"], seed=0), oracle)
    assert original > 0.7          # ~ (1 - noise): the last item determines the next
    assert shuffled < 0.25         # a random history item's successor is rarely the target
    assert original > 3 * shuffled
    chance = 1 / data.num_items
    assert shuffled > chance       # the set still carries a little information (the walk's neighbourhood)


def test_generator_is_seeded_and_titles_are_readable_and_unique():
    config = SyntheticConfig(num_users=30, num_items=40, seed=11)
    a, b = generate_synthetic(config), generate_synthetic(config)
    assert a.frame.equals(b.frame) and a.titles.equals(b.titles)
    assert not a.frame.equals(generate_synthetic(SyntheticConfig(num_users=30, num_items=40, seed=12)).frame)
    titles = synthetic_titles(8000)
    assert len(set(titles)) == 8000 and titles[0].count(" ") == 2 and titles[-1].endswith("Vol. 2")
    lengths = a.frame.groupby("user", sort=False).size()
    assert lengths.between(config.min_length, config.max_length).all()
    times = a.frame.groupby("user", sort=False)["timestamp"].apply(lambda t: t.is_monotonic_increasing)
    assert times.all()


def test_successors_form_cycles_without_fixed_points():
    successor = successor_table(SyntheticConfig(num_items=50, cycle_length=8))
    assert sorted(successor.tolist()) == list(range(50))  # a permutation
    assert (successor != range(50)).all()


def test_zero_noise_walks_follow_the_successor_exactly():
    config = SyntheticConfig(num_users=20, num_items=30, noise=0.0, seed=2)
    raw = generate_synthetic(config)
    successor = successor_table(config)
    for _, group in raw.frame.groupby("user", sort=False):
        items = [int(x.split("_")[1]) for x in group["item"]]
        assert all(successor[a] == b for a, b in zip(items[:-1], items[1:]))
