"""The demo dataset of `manage.py demo`, made by the real services."""
