def __getattr__(name: str):
    # Task paths queued before billing.auto_topup and billing.cards moved into
    # billing.payments still resolve: django-q2's pydoc.locate looks them up as attributes
    # of this package (billing.moved_paths).
    from billing.moved_paths import moved

    return moved(f"{__name__}.{name}")
