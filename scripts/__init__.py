"""Command-line tools grouped by purpose: data/ (downloads and synthetic data), evaluation/ (scoring, merging,
visualising results), study/ (the ablation rows and the study), speed/ (speed and memory), cuda/ (the CUDA check),
and the quickstart. Each runs as `python scripts/<group>/<name>.py` or `python -m scripts.<group>.<name>`. Library
code lives in the packages: a script imports packages and, at most, the helper modules of its own group; it runs
another command as a child process (configs.common.run_child)."""
