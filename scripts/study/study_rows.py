"""The ablation study's generated rows (scripts/study/run_study.py): the selection sweep and the store rows of a network
trained without sensory memory, written as row files (config presets with a `# <group>: <label>` title) that
scripts/study/run_ablations.py runs like the rows of configs/ablations/."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import yaml

from configs.ablation_rows import select_rows
from configs.common import atomic_write_text
from inference.miniature import miniature_memory_settings
from inference.evaluation.study_statistics import PERCENT, SweepPoint

# The selection sweep: shares of each consolidation's candidates kept as prototypes (the paper keeps 1.6 %; the
# paper's P = 128 at 96x160 keeps 43 %), random selection with this many seeds.
DEFAULT_SWEEP_SHARES = (0.01, 0.03, 0.10, 0.43)
DEFAULT_SWEEP_SEEDS = 3
SWEEP_GROUP = "Selection sweep"
# The paper's store rows that need a network trained without sensory memory (configs/study_no_sensory.yaml).
NO_SENSORY_ROWS = ("stores_working_long_term", "stores_working_only", "stores_long_term_only")


@dataclasses.dataclass(frozen=True)
class GeneratedRow:
    """A row written as a config file for run_ablations.py: its name, `# group: label` title, inference fields and
    model fields (which eval.py checks against the checkpoint, e.g. hidden_dim 0)."""

    name: str
    group: str
    label: str
    inference: dict[str, Any]
    model: dict[str, Any] = dataclasses.field(default_factory=dict)

    def write(self, folder: Path) -> None:
        sections = {"inference": self.inference, **({"model": self.model} if self.model else {})}
        text = f"# {self.group}: {self.label}\n" + yaml.safe_dump(sections, sort_keys=True)
        path = folder / f"{self.name}.yaml"
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)


def sweep_rows(shares: Sequence[float], num_seeds: int, elements_per_frame: int,
               num_frames: int) -> tuple[list[GeneratedRow], list[SweepPoint]]:
    """The selection sweep's rows: at each share kept, P (and LT_max = the same number of consolidations' worth,
    so that long-term memory fills at the same frame) from inference/miniature.py, x {usage, random with seeds
    0..num_seeds-1} x {potentiation on, off}.

    Raises:
        ValueError: a share outside (0, 1], or fewer than one seed.
    """
    if num_seeds < 1:
        raise ValueError(f"--sweep_seeds {num_seeds} is invalid; expected ≥ 1 random seed")
    rows, points = [], []
    for share in shares:
        settings = miniature_memory_settings(elements_per_frame, num_frames, kept_share=share)
        budget = dict(num_prototypes=settings.num_prototypes, max_long_term_elements=settings.max_long_term_elements)
        tag = f"keep{share * PERCENT:g}".replace(".", "p")
        point_rows: dict[tuple[str, bool], tuple[str, ...]] = {}
        for potentiation in (True, False):
            suffix = "potentiation" if potentiation else "no_potentiation"
            variants = [("usage", f"{tag}_usage_{suffix}", {})] + [
                ("random", f"{tag}_random_seed{seed}_{suffix}", dict(seed=seed)) for seed in range(num_seeds)]
            for selection, name, extra in variants:
                seed = f" seed {extra['seed']}" if extra else ""
                label = (f"P = {settings.num_prototypes} ({settings.kept_share:.1%} kept), {selection}{seed}, "
                         f"potentiation {'on' if potentiation else 'off'}")
                rows.append(GeneratedRow(f"sweep_{name}", SWEEP_GROUP, label, dict(
                    budget, prototype_selection=selection, use_potentiation=potentiation, **extra)))
                point_rows[(selection, potentiation)] = point_rows.get((selection, potentiation), ()) + (
                    f"sweep_{name}",)
        points.append(SweepPoint(settings.kept_share, settings.num_prototypes, point_rows))
    return rows, points


def no_sensory_rows() -> list[GeneratedRow]:
    """The paper's store rows for a network without sensory memory, with their own inference settings (their
    files name a released checkpoint; here they run --no_sensory_model)."""
    rows = []
    for row in select_rows(list(NO_SENSORY_ROWS)):
        sections: dict[str, dict[str, Any]] = {"inference": {}, "model": {}}
        for override in row.overrides:
            key, _, value = override.partition("=")
            section, _, field = key.partition(".")
            if section in sections:
                sections[section][field] = yaml.safe_load(value)
        rows.append(GeneratedRow(row.name, row.group, f"{row.label} (retrained without sensory memory)",
                                 sections["inference"], sections["model"]))
    return rows
