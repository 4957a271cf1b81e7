"""Order: individual customer orders (buy or sell one slice), validated and turned into priority intents."""
