"""The language-model track (docs/science.md, "The language-model study"): OLMo-style decoders
pretrained on a synthetic or real text source, with novel tasks injected at controlled
frequencies.

It builds on the layers below it (`rare_tasks.core`, whose engine trains its programs,
`rare_tasks.analysis`, `rare_tasks.injection`); the two tracks never import each other, and only
`rare_tasks.studies` sees both. See docs/architecture.md.
"""
