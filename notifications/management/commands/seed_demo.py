from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Cohort, Role, User

DEMO_USERS = [
    # username, password, role, first, last, flags
    ("admin", "flashnotify-admin", Role.ADMIN, "Ada", "Admin", {"is_staff": True, "is_superuser": True}),
    ("t1001", "flashnotify-staff", Role.STAFF, "Tom", "Teacher", {"is_staff": True}),
    # Emergency alerts: a manager who drafts (the admin, who also has the permission, approves) and an operator
    # on duty, whom a check-in answer "2" (need help) alerts.
    ("e1001", "flashnotify-emergency", Role.EMERGENCY, "Emma", "Emergency", {"is_staff": True}),
    ("o1001", "flashnotify-duty", Role.ON_DUTY, "Omar", "On Duty", {"is_staff": True}),
]
# Staff too: the console is for Staff and Admin.
EXTRA_ROLES = {"e1001": [Role.STAFF], "o1001": [Role.STAFF]}
# The cohort a Test alert goes to (set EMERGENCY_TEST_COHORT to it; `make run` does).
TEST_LIST = ("emergency-test-list", "Emergency alert test list")
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
        cohort.managers.add(*User.objects.filter(username__in=["t1001", "e1001"]))
        for username, roles in EXTRA_ROLES.items():
            User.objects.get(username=username).groups.add(*Group.objects.filter(name__in=roles))
        test_list, _ = Cohort.objects.get_or_create(code=TEST_LIST[0], defaults={"name": TEST_LIST[1]})
        test_list.members.add(*User.objects.filter(username__in=[row[0] for row in DEMO_USERS]))
        for username, first, last, language in STUDENTS:
            student = self._user(username, STUDENT_PASSWORD, Role.USER, first_name=first, last_name=last,
                                 email=f"{username}@students.flashnotify.localhost", language=language)
            cohort.members.add(student)
        self.stdout.write("Demo logins (demo data only):")
        for username, password, role, *_ in DEMO_USERS:
            self.stdout.write(f"  {role:<9} {username:<6} / {password}")
        self.stdout.write(f"  Students s2001…s2005 / {STUDENT_PASSWORD}  (cohort cs101-2026)")
        self.stdout.write(f"  Test alerts go to the cohort {TEST_LIST[0]} (the staff above) with "
                          f"EMERGENCY_TEST_COHORT={TEST_LIST[0]}")

    def _user(self, username, password, role, **fields):
        user, created = User.objects.get_or_create(username=username, defaults=fields)
        if created:
            user.set_password(password)
            user.save()
        user.groups.add(Group.objects.get(name=role))
        return user
