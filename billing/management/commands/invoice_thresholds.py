from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Invoice every postpaid account whose unbilled usage reached its threshold."
    job = "billing.jobs.invoice_thresholds"
