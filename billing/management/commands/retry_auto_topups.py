from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Start auto-top-up retries whose back-off has passed; ask again for lost charges."
    job = "billing.jobs.retry_auto_topups"
