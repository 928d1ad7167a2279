"""The atlas catalog's SQLite schema, shared by the writer and the reader."""

# Bumped whenever the catalog or the arrays change shape; an atlas of another format is rebuilt, not read.
ATLAS_FORMAT = 3

SCHEMA = """
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
    idx INTEGER PRIMARY KEY,         -- names the array files: layer-{idx:03d}.*.npy
    name TEXT NOT NULL UNIQUE,       -- dotted module path
    type TEXT NOT NULL,
    units INTEGER NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL
);
CREATE TABLE units (
    layer INTEGER NOT NULL,
    unit INTEGER NOT NULL,
    max_mean REAL, max_std REAL, max_max REAL,       -- of the per-image spatial max
    mean_mean REAL, mean_std REAL, mean_max REAL,    -- of the per-image spatial mean
    fraction_active REAL,                            -- images whose spatial max > 0
    images_at_max INTEGER,                           -- images whose spatial max equals max_max (> 1: saturated)
    quantile_995 REAL,                               -- of all activation values (region threshold)
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
"""

SIMILAR_PER_UNIT = 8

