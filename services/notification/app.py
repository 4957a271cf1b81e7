"""The notification service: ``python -m services.notification``."""

from pathlib import Path

from services.notification.handlers import register
from shared.service import Service
from shared.settings import Settings


def create_service(settings: Settings | None = None) -> Service:
    service = Service("notification", Path(__file__).parent / "migrations", settings)
    register(service)
    return service


service = create_service()
app = service.app()
