"""`GET /health`: the process is up and the database answers."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from app.db import Session

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    database: str


@router.get("/health", summary="Liveness and database readiness")
async def health(session: Session) -> Health:
    """`ok` when the process is up and the database answers a query."""
    await session.execute(text("SELECT 1"))
    return Health(status="ok", database="ok")
