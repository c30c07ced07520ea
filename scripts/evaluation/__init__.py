"""Evaluation tools: scoring a folder of masks, merging multi-scale outputs, overlay videos and contact sheets."""
