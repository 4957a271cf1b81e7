"""The market service: ``python -m services.market``."""

from services.market.handlers import register
from shared.service import service_factory

create_service = service_factory("market", __file__, register)
service = create_service()
app = service.app()
