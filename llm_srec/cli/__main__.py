"""`python -m llm_srec.cli` (and `accelerate launch -m llm_srec.cli ...`) run the `llm-srec` command line."""

import sys

from llm_srec.cli import main

sys.exit(main())
