"""Notification: tells account holders what happened, in a stored feed and on delivery channels."""
