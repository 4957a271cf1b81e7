"""The pie service: ``python -m services.pie``."""

from pathlib import Path

from services.pie.handlers import register
from shared.service import Service
from shared.settings import Settings


def create_service(settings: Settings | None = None) -> Service:
    service = Service("pie", Path(__file__).parent / "migrations", settings)
    register(service)
    return service


service = create_service()
app = service.app()
