def __getattr__(name: str):
    # Task paths queued when this package was a module (billing.notifications.send_notification)
    # still resolve: django-q2's pydoc.locate looks them up as attributes of this package
    # (billing.moved_paths).
    from billing.moved_paths import moved

    return moved(f"{__name__}.{name}")
