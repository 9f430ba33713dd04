"""Gapless numbers for documents: invoices by year, receipts by series (SPEC I1).

WARNING: the counter row stays locked until the issuing transaction ends, so two documents of one
series are numbered one after the other; that is what keeps the series without gaps. A
transaction that rolls back gives its numbers back.
"""

from django.db import IntegrityError, models, transaction


def next_numbers(sequence_model: type[models.Model], *, count: int, **series) -> list[int]:
    """Take `count` consecutive numbers of one series (`year=2026`, `series="R-2026"`).

    The model has the series field(s), unique, and `last_number`. Call inside the transaction
    that issues the documents.
    """
    if count <= 0:
        return []
    try:
        with transaction.atomic():
            sequence_model.objects.get_or_create(**series)
    except IntegrityError:
        pass  # created by a concurrent transaction a moment ago
    sequence = sequence_model.objects.select_for_update().get(**series)
    first = sequence.last_number + 1
    sequence.last_number += count
    sequence.save(update_fields=["last_number"])
    return list(range(first, first + count))
