from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Write off credit grants whose expiry has passed."
    job = "billing.jobs.expire_credit"
