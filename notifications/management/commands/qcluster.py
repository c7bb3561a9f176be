import os

from django.core.management.base import BaseCommand

from notifications.engine import queue


class Command(BaseCommand):
    # Replaces django-q2's own qcluster (notifications comes before django_q in INSTALLED_APPS).
    help = (
        "Start a django-q2 cluster: Q_WORKERS worker processes taking tasks from the broker. SIGTERM or "
        "SIGINT stops it in order (each worker finishes its task), whether the signal reaches the master "
        "alone or its whole process group (systemd, Ctrl-C in a terminal).\n\n"
        "Examples:\n  manage.py qcluster\n  Q_WORKERS=4 manage.py qcluster"
    )

    def add_arguments(self, parser):
        parser.add_argument("--run-once", action="store_true", help="Start the cluster, then stop it.")
        parser.add_argument("-n", "--name", dest="cluster_name",
                            help="Another cluster (queue) name than Q_CLUSTER_NAME's; prefer Q_CLUSTER_NAME.")

    def handle(self, *args, run_once, cluster_name, **options):
        if cluster_name:
            os.environ["Q_CLUSTER_NAME"] = cluster_name  # what django-q2's own command does
        queue.cluster_run(run_once=run_once)
