from services.notification.app import service

service.run()
