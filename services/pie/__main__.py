from services.pie.app import service

service.run()
