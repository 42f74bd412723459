"""Offline quality evaluation: classical image analysis of generated clips against their prompts (no models),
and a driver for VBench on real models."""
