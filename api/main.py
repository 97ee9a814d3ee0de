"""ASGI entry point: `uvicorn api.main:app` (what `flasktrack api` runs)."""

from api.app import create_app
from flasktrack.logging import configure_logging
from flasktrack.settings import get_settings

_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_json)
app = create_app()
