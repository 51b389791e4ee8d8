"""Jinja model-card templates (package data), rendered by `llm_srec.hub.render_model_card`.

`llm_srec.md.j2` is the LLM-SRec card and `sasrec.md.j2` the SASRec teacher's; both receive the YAML metadata as
`card_data` and the pre-formatted tables built by `llm_srec.hub`.
"""
