"""The atlas catalog's SQLite schema, shared by the writer and the reader. The units table has a column per
declared statistic (app/atlas/statistics.py)."""

from app.atlas.kinds import CHANNEL
from app.atlas.statistics import STATISTICS

STATISTIC_COLUMNS = ", ".join(f"{statistic.name} {statistic.sql_type}" for statistic in STATISTICS) + ","
# Bumped whenever the catalog or the arrays change shape; an atlas of another format is rebuilt, not read.
ATLAS_FORMAT = 5  # 5: dissection (concepts, unit_concepts, unit_dissection, unit_classes)

SCHEMA = f"""
-- Tables keyed by (layer, unit, ...) are clustered on that key (WITHOUT ROWID): one b-tree, not two.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);          -- JSON values
CREATE TABLE images (
    id INTEGER PRIMARY KEY,          -- index in the dataset's sorted file list
    path TEXT NOT NULL,              -- relative to the dataset root
    label TEXT,                      -- top-level folder name, if any
    readable INTEGER NOT NULL,
    prediction INTEGER,              -- the model's top class (NULL when unreadable)
    confidence REAL
);
CREATE TABLE layers (
    idx INTEGER PRIMARY KEY,         -- names the array files (app/atlas/layout.py)
    name TEXT NOT NULL,              -- dotted module path
    kind TEXT NOT NULL DEFAULT '{CHANNEL}',  -- of unit (app/atlas/kinds.py)
    type TEXT NOT NULL,
    units INTEGER NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    UNIQUE (name, kind)
);
CREATE TABLE units (
    layer INTEGER NOT NULL,
    unit INTEGER NOT NULL,
    {STATISTIC_COLUMNS}
    dead INTEGER NOT NULL,                           -- never active on any image
    top_image INTEGER,
    PRIMARY KEY (layer, unit)
) WITHOUT ROWID;
CREATE TABLE topk (
    layer INTEGER NOT NULL, unit INTEGER NOT NULL, rank INTEGER NOT NULL,
    image INTEGER NOT NULL, value REAL NOT NULL, y INTEGER NOT NULL, x INTEGER NOT NULL,
    PRIMARY KEY (layer, unit, rank)
) WITHOUT ROWID;
CREATE TABLE similar (
    layer INTEGER NOT NULL, unit INTEGER NOT NULL, rank INTEGER NOT NULL,
    other INTEGER NOT NULL, correlation REAL NOT NULL,
    PRIMARY KEY (layer, unit, rank)
) WITHOUT ROWID;
-- Dissection (app/atlas/dissection.py): empty when the dataset has no concept labels or classes.
CREATE TABLE concepts (
    idx INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,         -- category:name
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    pixels INTEGER NOT NULL,         -- labelled pixels over the dataset, in the model's view
    images INTEGER NOT NULL          -- images with the concept
);
CREATE TABLE unit_concepts (         -- each unit's best concepts by IoU, rank 0 first
    layer INTEGER NOT NULL, unit INTEGER NOT NULL, rank INTEGER NOT NULL,
    concept INTEGER NOT NULL, iou REAL NOT NULL,
    PRIMARY KEY (layer, unit, rank)
) WITHOUT ROWID;
CREATE INDEX unit_concepts_by_concept ON unit_concepts (concept, iou);
CREATE TABLE unit_dissection (
    layer INTEGER NOT NULL, unit INTEGER NOT NULL,
    threshold REAL,                  -- the top-0.005 quantile the region is cut at
    region_pixels INTEGER NOT NULL,  -- over the dataset
    formula TEXT, formula_iou REAL,  -- the best compositional label
    PRIMARY KEY (layer, unit)
) WITHOUT ROWID;
CREATE TABLE unit_classes (          -- each unit's most selective classes by ROC AUC, rank 0 first
    layer INTEGER NOT NULL, unit INTEGER NOT NULL, rank INTEGER NOT NULL,
    class TEXT NOT NULL, auc REAL NOT NULL,
    PRIMARY KEY (layer, unit, rank)
) WITHOUT ROWID;
"""

SIMILAR_PER_UNIT = 8

