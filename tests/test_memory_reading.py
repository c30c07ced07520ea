"""The memory-reading switches as one typed object (`configs.schema.MemoryReading`).

Adding a reading switch touches the schema, the memory maths and one YAML row: checkpoint sidecars, train.py's
model switches, the `model:` config keys and every reader take the switches from the object's fields, never from a
list of names.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from configs.loader import load_config
from configs.schema import MemoryReading, ModelConfig, NetworkShape

ROOT = Path(__file__).resolve().parents[1]
NEW_SWITCH = "use_test_temperature"
# Run with a copy of configs/ whose MemoryReading has one more field (and nothing else changed): what a new reading
# switch reaches without further edits. Prints JSON.
PROBE = f"""
import json, types, warnings
import train
from configs.loader import load_config
from configs.schema import Config, InferenceConfig, ModelConfig
from configs.sidecar import apply_checkpoint_switches, read_sidecar, write_sidecar
from inference.memory_manager import MemoryManager

model = ModelConfig({NEW_SWITCH}=False)
network = types.SimpleNamespace(key_dim=64, value_dim=512, hidden_dim=64, single_object=False)
switches = train.model_switches(model, network)
write_sidecar("snapshot.pth", switches)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    applied = apply_checkpoint_switches(Config(), "snapshot.pth", hidden_dim=64)
manager = MemoryManager(InferenceConfig(), model_config=applied.model, hidden_dim=0, count_long_term_usage=True)
print(json.dumps(dict(
    model_switches=list(switches),
    sidecar=getattr(read_sidecar("snapshot.pth"), "{NEW_SWITCH}"),
    applied=getattr(applied.model.reading, "{NEW_SWITCH}"),
    warned=[str(warning.message) for warning in caught],
    manager=getattr(manager.reading, "{NEW_SWITCH}"),
    override=getattr(load_config(None, ["model.{NEW_SWITCH}=false"]).model.reading, "{NEW_SWITCH}"),
)))
"""


def test_model_config_is_the_network_shape_then_the_reading_switches():
    """The `model:` keys stay flat and in their order (YAML presets, sidecars and resolved configs unchanged)."""
    names = [item.name for item in dataclasses.fields(ModelConfig)]
    shape = [item.name for item in dataclasses.fields(NetworkShape)]
    reading = [item.name for item in dataclasses.fields(MemoryReading)]
    assert names == shape + reading == ["key_dim", "value_dim", "hidden_dim", "single_object", "similarity",
                                        "use_shrinkage", "use_selection"]
    model = load_config(ROOT / "configs/ablations/reading_l2_shrinkage.yaml").model
    assert model.reading == MemoryReading(similarity="l2", use_shrinkage=True, use_selection=False)
    assert type(model.reading) is MemoryReading


def test_a_reading_switch_added_to_the_schema_reaches_sidecars_configs_and_readers(tmp_path):
    """A field added to MemoryReading alone (in a copy of configs/) is recorded in train.py's model switches and the
    sidecar, read back, applied to an evaluation from the sidecar (with the warning naming it), accepted as a
    `model.` override and handed to the inference memory manager.

    Mutation checked: train.model_switches listing the reading switches by name (as before) fails here; so does
    `ModelConfig.reading` listing them by name, and `apply_checkpoint_switches` comparing a fixed list of names.
    """
    shutil.copytree(ROOT / "configs", tmp_path / "configs", ignore=shutil.ignore_patterns("__pycache__"))
    schema = tmp_path / "configs" / "schema.py"
    anchor = "    use_selection: bool = True"
    text = schema.read_text()
    assert text.count(anchor) == 1
    schema.write_text(text.replace(anchor, f"    {NEW_SWITCH}: bool = True  # test only\n{anchor}"))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["model_switches"] == ["key_dim", "value_dim", "hidden_dim", "single_object", "similarity",
                                       "use_shrinkage", NEW_SWITCH, "use_selection"]
    assert probe["sidecar"] is False and probe["applied"] is False and probe["manager"] is False
    assert probe["override"] is False
    assert any(f"{NEW_SWITCH}=False" in message for message in probe["warned"]), probe["warned"]
