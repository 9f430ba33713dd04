from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Close every period that has ended: invoices, statements, allowances."
    job = "billing.jobs.close_periods"
