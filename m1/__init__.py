"""The ``m1`` command line: run the services, act as the bank or an operator, read results."""
