"""Interoperability with the community's tools: LoRA key formats (diffusers, peft, kohya/musubi, ComfyUI), the
released checkpoint naming that ComfyUI and diffusers' single-file loader read, and GGUF transformer files.

- `lora_keys`: LoRA state dicts in each format <-> one canonical adapter (pure functions).
- `checkpoint`: a transformer's weights in the released naming (layout and guidance folds).
- `gguf_files`: GGUF writing and loading (dequantised per layer on the fly).
- `export`: `motif-video export`.

Import the modules themselves (this package imports nothing, so the CLI's parser stays light).
"""
