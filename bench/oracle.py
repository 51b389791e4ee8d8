"""Capacity diagnostic: can a recipe copy the ranking it is handed?

`bench/recipes.py` with ``--backbone oracle``: LLM-SRec's real heads, losses, collator, Trainer (validation-based
selection) and evaluator, with the backbone's output-token states replaced by oracle features
(`llm_srec.evaluation.oracle`): ``teacher`` hands the heads the SASRec teacher's own vectors (h_U = O_u of the
shown history, h_I = E_i); ``bag`` is the order-blind control (h_U = mean E_i of the shown history). A recipe that
cannot reach its teacher here cannot beat it with any backbone. Results go to ``bench/results/oracle_<dataset>.json``;
the last stdout line is one JSON object with keys ``llm_srec`` and ``teacher`` (protocol label -> metrics).

Usage:
    python bench/oracle.py --quick                      # <= 10 min on 2 CPU cores
    python bench/oracle.py --seeds 0 1 2                # Scientific, every lever
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import main  # noqa: E402

if __name__ == "__main__":
    main(default_backbone="oracle", description=__doc__.splitlines()[0])
