from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Release credit holds of authorizations that expired."
    job = "usage.jobs.release_holds"
