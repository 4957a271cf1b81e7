from services.margin.app import service

service.run()
