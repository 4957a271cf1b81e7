"""The order service: ``python -m services.order``."""

from pathlib import Path

from services.order.handlers import register
from shared.service import Service
from shared.settings import Settings


def create_service(settings: Settings | None = None) -> Service:
    service = Service("order", Path(__file__).parent / "migrations", settings)
    register(service)
    return service


service = create_service()
app = service.app()
