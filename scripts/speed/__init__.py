"""Speed and memory: the long-video benchmark and scaling study, the reference-vs-fast comparison, the timed
training step."""
