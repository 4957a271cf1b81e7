"""The project's shared package: contracts and plumbing every service needs.

Domain rules never live here; each service keeps its own in ``services/<name>/domain.py``.
"""
