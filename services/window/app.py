"""The window service: ``python -m services.window``."""

from pathlib import Path

from services.window.handlers import register
from shared.service import Service
from shared.settings import Settings


def create_service(settings: Settings | None = None) -> Service:
    service = Service("window", Path(__file__).parent / "migrations", settings)
    register(service)
    return service


service = create_service()
app = service.app()
