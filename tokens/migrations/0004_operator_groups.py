"""The admin's roles: "Operators (read-only)" and "Token managers" (tokens/roles.py, docs/operations.md)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from tokens.roles import OPERATORS, TOKEN_MANAGERS, roles_sync


def groups_create(apps, schema_editor):
    # Django creates permissions after the whole migrate run (post_migrate): on a fresh database they do not
    # exist yet here, so create them now, for every app, from the historical models.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    roles_sync(apps=apps)


def groups_delete(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[OPERATORS, TOKEN_MANAGERS]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("tokens", "0003_campaign_controls"),
        # The latest of every app whose permissions the groups hold.
        ("templates_registry", "0004_merge_health_limits"),
        ("broadcasts", "0018_activity_rollups"),
        ("events", "0007_endpoint_secret_rotation_and_event_types"),
    ]

    operations = [migrations.RunPython(groups_create, groups_delete)]
