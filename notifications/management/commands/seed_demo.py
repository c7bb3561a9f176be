from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Cohort, Role, User

DEMO_USERS = [
    # username, password, role, first, last, flags
    ("admin", "flashnotify-admin", Role.ADMIN, "Ada", "Admin", {"is_staff": True, "is_superuser": True}),
    ("t1001", "flashnotify-staff", Role.STAFF, "Tom", "Teacher", {"is_staff": True}),
]
STUDENTS = [("s2001", "Sam", "Student", "en"), ("s2002", "Léa", "Étudiante", "fr"), ("s2003", "Noah", "Nguyen", "en"),
            ("s2004", "Chloé", "Martin", "fr"), ("s2005", "Priya", "Patel", "en")]
STUDENT_PASSWORD = "flashnotify-student"


class Command(BaseCommand):
    help = "Create the demo accounts and cohort (idempotent) and print their logins.\n\nExample: manage.py seed_demo"

    @transaction.atomic
    def handle(self, *args, **options):
        for username, password, role, first, last, flags in DEMO_USERS:
            self._user(username, password, role, first_name=first, last_name=last,
                       email=f"{username}@staff.flashnotify.localhost", **flags)
        cohort, _ = Cohort.objects.get_or_create(code="cs101-2026", defaults={"name": "Computer Science 101 (2026)"})
        cohort.managers.add(User.objects.get(username="t1001"))
        for username, first, last, language in STUDENTS:
            student = self._user(username, STUDENT_PASSWORD, Role.USER, first_name=first, last_name=last,
                                 email=f"{username}@students.flashnotify.localhost", language=language)
            cohort.members.add(student)
        self.stdout.write("Demo logins (demo data only):")
        for username, password, role, *_ in DEMO_USERS:
            self.stdout.write(f"  {role:<6} {username:<6} / {password}")
        self.stdout.write(f"  Students s2001…s2005 / {STUDENT_PASSWORD}  (cohort cs101-2026)")

    def _user(self, username, password, role, **fields):
        user, created = User.objects.get_or_create(username=username, defaults=fields)
        if created:
            user.set_password(password)
            user.save()
        user.groups.add(Group.objects.get(name=role))
        return user
