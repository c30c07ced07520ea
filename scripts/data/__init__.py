"""Data preparation: dataset and model downloads, synthetic data, the YouTube-VOS resize, long-video expansion."""
