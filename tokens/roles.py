"""The admin's two roles, as Django groups (docs/operations.md): operators who watch, token managers who issue.

Staff get a role by joining a group; a superuser needs none. The groups are created by a migration
(tokens/migrations/0004_operator_groups.py) through ``roles_sync``, which takes the migration's ``apps`` so it
works on the historical models as well as the live ones.
"""

from django.apps.registry import Apps

OPERATORS = "Operators (read-only)"
TOKEN_MANAGERS = "Token managers"

# Every model of these apps is operational: operators may view all of them (they change none).
OPERATIONAL_APPS = ("tokens", "templates_registry", "broadcasts", "events")
# ...except the API tokens, which only token managers see (who may use a token may act as its organization).
TOKEN_MODEL = ("tokens", "accesstoken")

# (app label, codename): what a token manager holds. The token pages check ``manage_tokens`` (tokens/admin.py);
# the model permissions make the same grant visible in the admin's group page. The organizations are viewed to
# pick the one a new token belongs to; tokens are revoked, never deleted.
TOKEN_MANAGER_PERMISSIONS = (
    ("tokens", "manage_tokens"),
    ("tokens", "view_accesstoken"),
    ("tokens", "add_accesstoken"),
    ("tokens", "change_accesstoken"),
    ("tokens", "view_organization"),
)


def roles_sync(*, apps: Apps) -> None:
    """Create both groups if missing and grant their permissions (adds only: a grant removed by hand stays
    removed until this runs again). The permissions must exist already (``create_permissions``)."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    operator_permissions = permission_model.objects.filter(
        content_type__app_label__in=OPERATIONAL_APPS, codename__startswith="view_"
    ).exclude(content_type__app_label=TOKEN_MODEL[0], content_type__model=TOKEN_MODEL[1])
    operators, _ = group_model.objects.get_or_create(name=OPERATORS)
    operators.permissions.add(*operator_permissions)

    manager_permissions = [
        permission_model.objects.get(content_type__app_label=app_label, codename=codename)
        for app_label, codename in TOKEN_MANAGER_PERMISSIONS
    ]
    managers, _ = group_model.objects.get_or_create(name=TOKEN_MANAGERS)
    managers.permissions.add(*manager_permissions)
