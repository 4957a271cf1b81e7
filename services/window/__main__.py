from services.window.app import service

service.run()
