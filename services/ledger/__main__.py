from services.ledger.app import service

service.run()
