"""The pie service: ``python -m services.pie``."""

from services.pie.handlers import register
from shared.service import service_factory

create_service = service_factory("pie", __file__, register)
service = create_service()
app = service.app()
