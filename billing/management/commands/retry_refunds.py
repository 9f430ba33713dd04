from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Ask Stripe again for refunds whose request died before it answered."
    job = "billing.jobs.retry_refunds"
