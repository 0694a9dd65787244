from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("broadcasts", "0015_identities_bsuid_in_window_price"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="send",
            index=models.Index(
                condition=models.Q(("user_id__isnull", False)), fields=["user_id"], name="send_user_id"
            ),
        ),
    ]
