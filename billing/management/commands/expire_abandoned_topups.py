from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Cancel the manual top-ups whose checkout page was left unpaid for 24 hours."
    job = "billing.jobs.expire_abandoned_topups"
