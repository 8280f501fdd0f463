"""Stub: replaced by the domain work."""

from fastapi import APIRouter

router = APIRouter()
