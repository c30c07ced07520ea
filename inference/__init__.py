"""Running a trained XMem over videos: the streaming core, its memories and object bookkeeping."""
from inference.inference_core import InferenceCore, normalize_image
from inference.memory_manager import MemoryManager, resolve_long_term_count_usage
from inference.memory_store import MemoryStore
from inference.object_manager import ObjectManager, SlotRemap
from inference.propagate import propagate

__all__ = [
    "InferenceCore",
    "MemoryManager",
    "MemoryStore",
    "ObjectManager",
    "SlotRemap",
    "normalize_image",
    "propagate",
    "resolve_long_term_count_usage",
]
