"""A synthetic catalog and user sequences whose next item is decided by ORDER, for the demo, tests and probes.

Why: the paper's question is whether a model uses the order of a history. Here every item has one fixed successor
(items form cycles); a user walks the cycles and, with probability `noise`, jumps to a random item. The next item
is therefore the successor of the LAST item: a model (or oracle) that reads order predicts it, while the same
history shuffled hides which item was last (the jumps make the set of items ambiguous about where the walk ends).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .raw import RawInteractions

_ADJECTIVES = (
    "Amber", "Brisk", "Cobalt", "Dusky", "Emerald", "Frosted", "Gilded", "Hollow", "Ivory", "Jade", "Keen",
    "Lunar", "Misty", "Noble", "Opal", "Quiet", "Rustic", "Silver", "Tidal", "Velvet", "Wild", "Young", "Zesty",
    "Crimson",
)
_MATERIALS = (
    "Oak", "Copper", "Linen", "Glass", "Cedar", "Marble", "Wool", "Bamboo", "Steel", "Clay", "Maple", "Silk",
    "Slate", "Birch", "Leather", "Cotton",
)
_OBJECTS = (
    "Lantern", "Kettle", "Notebook", "Compass", "Teapot", "Backpack", "Candle", "Clock", "Mug", "Blanket",
    "Journal", "Vase", "Lamp", "Basket", "Pillow", "Frame", "Bowl", "Scarf", "Planter", "Radio",
)
START_TIME = 1_600_000_000  # 2020-09-13, unix seconds
DAY = 86_400


@dataclass(frozen=True)
class SyntheticConfig:
    """Generator parameters. `cycle_length`: items per successor cycle (longer than `max_length` keeps repeats
    rare); `noise`: probability of a random jump at each step."""

    num_users: int = 500
    num_items: int = 200
    min_length: int = 6
    max_length: int = 20
    noise: float = 0.2
    cycle_length: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_users < 1 or self.num_items < 2:
            raise ValueError("synthetic data needs >= 1 user and >= 2 items")
        if not 2 <= self.min_length <= self.max_length:
            raise ValueError(f"need 2 <= min_length <= max_length, got {self.min_length}, {self.max_length}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {self.noise}")
        if self.cycle_length < 2:
            raise ValueError(f"cycle_length must be >= 2, got {self.cycle_length}")


def synthetic_titles(num_items: int) -> list[str]:
    """Readable, unique titles ("Amber Oak Lantern"); a volume number is added past 7,680 items."""
    combos = [f"{a} {m} {o}" for o in _OBJECTS for m in _MATERIALS for a in _ADJECTIVES]
    stride = 7919  # a prime coprime to len(combos): consecutive items get unrelated words
    return [combos[(i * stride) % len(combos)] + (f" Vol. {i // len(combos) + 1}" if i >= len(combos) else "")
            for i in range(num_items)]


def successor_table(config: SyntheticConfig) -> np.ndarray:
    """successor[i] for item codes 0..num_items-1: a random permutation cut into cycles of `cycle_length`."""
    rng = np.random.default_rng([config.seed, 1])
    order = rng.permutation(config.num_items)
    successor = np.empty(config.num_items, dtype=np.int64)
    for start in range(0, config.num_items, config.cycle_length):
        cycle = order[start:start + config.cycle_length]
        if len(cycle) == 1:  # a leftover single item joins the previous cycle's successor chain
            cycle = order[start - 1:start + 1]
        successor[cycle] = np.roll(cycle, -1)
    return successor


def generate_synthetic(config: SyntheticConfig | None = None) -> RawInteractions:
    """Users' walks over the successor cycles, with daily-ish increasing timestamps; same config -> same data."""
    config = config or SyntheticConfig()
    rng = np.random.default_rng([config.seed, 2])
    successor = successor_table(config)
    lengths = rng.integers(config.min_length, config.max_length + 1, size=config.num_users)
    total = int(lengths.sum())
    first = np.r_[True, np.zeros(total - 1, dtype=bool)]
    first[np.cumsum(lengths)[:-1]] = True
    jumps = rng.random(total) < config.noise
    random_items = rng.integers(0, config.num_items, size=total)
    items = np.empty(total, dtype=np.int64)
    # the walk is inherently sequential; it runs once over `total` steps (tens of thousands), not a hot path
    for step in range(total):
        items[step] = random_items[step] if first[step] or jumps[step] else successor[items[step - 1]]
    gaps = rng.integers(DAY // 4, 30 * DAY, size=total)
    user_start = START_TIME + rng.integers(0, 365 * DAY, size=config.num_users)
    owner = np.repeat(np.arange(config.num_users), lengths)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    cumulative = np.cumsum(gaps)
    timestamps = user_start[owner] + cumulative - cumulative[starts][owner]
    frame = pd.DataFrame({
        "user": [f"user_{u:05d}" for u in owner],
        "item": [f"item_{i:05d}" for i in items],
        "timestamp": timestamps.astype(np.int64),
    })
    titles = pd.Series(synthetic_titles(config.num_items),
                       index=[f"item_{i:05d}" for i in range(config.num_items)], dtype=object)
    return RawInteractions(frame, titles, name=f"synthetic-{config.num_users}u-{config.num_items}i-seed{config.seed}")
