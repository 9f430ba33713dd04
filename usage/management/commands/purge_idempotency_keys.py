from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Delete the stored answers of Idempotency-Key requests older than 24 hours."
    job = "usage.jobs.purge_idempotency_keys"
