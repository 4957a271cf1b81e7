"""Window: collects trade intents, closes windows, nets them per security into orders for the
venue, and allocates the executions back to every intent exactly."""
