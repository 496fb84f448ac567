"""Notifications: SMS gateways, templates, reply commands, phone numbers, webhook signatures."""
