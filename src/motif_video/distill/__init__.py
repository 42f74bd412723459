"""Few-step, guidance-free students of Motif-Video: guidance distillation and piecewise rectified-flow step
distillation (docs/distillation.md)."""
