"""How the network is trained: one training iteration (the unrolled clip, the losses, the optimiser step) and its
plumbing (the run folder with resume checkpoints and records, the TensorBoard logger).

`train.py` drives it; `inference/` never imports it. Resume checkpoints take plain dicts (the trainer's state, the
data position's `to_dict()`), so nothing here imports `dataset/`.
"""
