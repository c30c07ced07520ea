"""The ablation rows and the study: run_ablations.py, run_study.py and their helper modules, study_prepare.py,
study_curve.py."""
