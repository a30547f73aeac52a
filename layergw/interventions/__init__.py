"""Interventions that check groups functionally: each written once against the families'
models. ``skip``: the layer-skip KL of a causal LM (the paper's language-model check)."""
