"""The per-unit statistics an atlas holds and the keys a layer's units sort by, read from their declarations
(app/atlas/statistics.py), so the front end copies no list of them."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.schemas import StatisticList
from app.atlas.statistics import STATISTICS, sorts

router = APIRouter(prefix="/api", tags=["units"])


@router.get("/statistics", response_model=StatisticList,
            summary="Every per-unit statistic (label, description, format) and the sort keys of a layer's units")
def list_statistics() -> StatisticList:
    return StatisticList(sorts=sorts(), statistics=[statistic.describe() for statistic in STATISTICS])
