from services.market.app import service

service.run()
