"""The window service: ``python -m services.window``."""

from services.window.handlers import register
from shared.service import service_factory

create_service = service_factory("window", __file__, register)
service = create_service()
app = service.app()
