from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Charge open invoices whose payment attempt is due (dunning)."
    job = "billing.jobs.collect_invoices"
