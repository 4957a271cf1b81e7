"""The margin service: ``python -m services.margin``."""

from services.margin.handlers import register
from shared.service import service_factory

create_service = service_factory("margin", __file__, register)
service = create_service()
app = service.app()
