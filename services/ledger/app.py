"""The ledger service: ``python -m services.ledger``."""

from services.ledger.handlers import register
from shared.service import service_factory

create_service = service_factory("ledger", __file__, register)
service = create_service()
app = service.app()
