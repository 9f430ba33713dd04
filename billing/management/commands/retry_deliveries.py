from billing.management.job_command import JobCommand


class Command(JobCommand):
    # Here with the other jobs' commands: webhooks sits below billing and imports only accounts.
    help = "Queue the webhook deliveries that are due: retries, and those a lost task left."
    job = "webhooks.jobs.retry_deliveries"
