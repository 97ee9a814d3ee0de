"""ASGI entry point: `uvicorn api.main:app` (what `flasktrack api` runs)."""

from api.app import create_app
from core.config import get_settings
from core.logging import configure_logging

_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_json)
app = create_app()
