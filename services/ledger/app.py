"""The ledger service: ``python -m services.ledger``."""

from pathlib import Path

from services.ledger.handlers import register
from shared.service import Service
from shared.settings import Settings


def create_service(settings: Settings | None = None) -> Service:
    service = Service("ledger", Path(__file__).parent / "migrations", settings)
    register(service)
    return service


service = create_service()
app = service.app()
