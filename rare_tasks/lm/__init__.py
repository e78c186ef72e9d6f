"""The language-model track (PAPER.md sections 3 and 5): OLMo-style decoders pretrained with
injected rare tasks.

Reserved: the track lands here, beside `rare_tasks.synthetic`, and builds on the layers below it
(`rare_tasks.core`, `rare_tasks.analysis`, `rare_tasks.injection`); the two tracks never import
each other, and only `rare_tasks.studies` sees both. See docs/architecture.md.
"""
