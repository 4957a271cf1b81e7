from services.order.app import service

service.run()
