"""The choices of `motif-video export`, declared once (no heavy imports: the CLI's parser reads this)."""

# What `gguf`'s Python package can write (its K-quants have no quantiser: use llama.cpp on an F16 export for those).
WRITE_TYPES: tuple[str, ...] = ("F32", "F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")
# Cross-attention layout of a transformer export (`checkpoint.released_state_dict`).
LAYOUTS: tuple[str, ...] = ("auto", "separate", "shared")
