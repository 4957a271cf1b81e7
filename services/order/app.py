"""The order service: ``python -m services.order``."""

from services.order.handlers import register
from shared.service import service_factory

create_service = service_factory("order", __file__, register)
service = create_service()
app = service.app()
