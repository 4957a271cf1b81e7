"""Market: prices (market data) and the default execution venue, a simulator that fills net
orders at the current price behind the same contract a real broker adapter would use."""
