from billing.management.job_command import JobCommand


class Command(JobCommand):
    help = "Send again the notifications still pending after ten minutes (lost or failed sends)."
    job = "billing.jobs.send_notifications"
