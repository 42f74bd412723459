from .attention import attention, attention_backend, available_attention_backends, set_attention_backend
from .routing import Route
from .transformer import MotifVideoTransformer, MotifVideoTransformerOutput, trim_text_padding

MotifVideoTransformer3DModel = MotifVideoTransformer  # diffusers' name for it

__all__ = [
    "MotifVideoTransformer",
    "MotifVideoTransformer3DModel",
    "MotifVideoTransformerOutput",
    "Route",
    "attention",
    "attention_backend",
    "available_attention_backends",
    "set_attention_backend",
    "trim_text_padding",
]
