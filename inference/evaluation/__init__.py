"""The evaluation harness around the algorithm: J, F and J&F (DAVIS-toolkit exact), scoring folders, the torchrun
rank group, the per-run report page and the comparison page of several runs, the re-entry metric, the study's
bootstrap statistics, the run summary that `eval.py` writes and the ablation table entries that
`scripts/study/run_ablations.py` writes.

The memory algorithm (`inference.inference_core`, `memory_manager`, `memory_store`, `frame_schedule`,
`object_manager`) never imports this package; the harness may import the algorithm.
"""
