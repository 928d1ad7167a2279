"""Every router of the app, in the order the app includes them (the OpenAPI schema lists them so; `pages`,
whose paths catch the rest, comes last)."""

from app.api.routers import (
    activations,
    annotations,
    cams,
    concepts,
    datasets,
    dictionaries,
    images,
    meta,
    models,
    notes,
    pages,
    progress,
    search,
    statistics,
    units,
    visualizations,
)

ROUTERS = (meta.router, models.router, units.router, statistics.router, annotations.router, dictionaries.router,
           visualizations.router,
           concepts.router, search.router, notes.router, activations.router, datasets.router, images.router,
           cams.router, progress.router, pages.router)
