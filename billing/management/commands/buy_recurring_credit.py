from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Buy the recurring credit of every billing period that has begun; retry declines due."
    job = "billing.jobs.buy_recurring_credit"
