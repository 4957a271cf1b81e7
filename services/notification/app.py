"""The notification service: ``python -m services.notification``."""

from services.notification.handlers import register
from shared.service import service_factory

create_service = service_factory("notification", __file__, register)
service = create_service()
app = service.app()
