"""At server start, queue an atlas build on the demo dataset for each bundled demo model that has none,
so a fresh install shows unit pages with no other command."""

from __future__ import annotations

from app.atlas.background import BackgroundIndexer, Foreground
from app.atlas.indexer import DEMO_DATASET, demo_dataset, index_model
from app.atlas.registry import AtlasRegistry
from app.settings import BUILTIN_MODEL_DIR, Settings
from app.store.store import ModelStore


def demo_models_without_atlas(store: ModelStore, atlases: AtlasRegistry) -> list[str]:
    """Bundled demo models with no current demo atlas (none yet, or one in an older format)."""
    return [model.id for model in store
            if model.ready and model.card_path.parent == BUILTIN_MODEL_DIR
            and DEMO_DATASET not in atlases.datasets(model.id)]


def start_first_run_indexing(store: ModelStore, atlases: AtlasRegistry, settings: Settings,
                             foreground: Foreground | None = None) -> BackgroundIndexer | None:
    if not settings.auto_index_demo:
        return None
    missing = demo_models_without_atlas(store, atlases)
    if not missing:
        return None
    indexer = BackgroundIndexer(
        lambda model_id, dataset, **kwargs: index_model(store.ready(model_id), dataset, settings, **kwargs),
        foreground)
    for model_id in missing:
        indexer.enqueue(model_id, DEMO_DATASET, lambda: demo_dataset(settings))
    return indexer
