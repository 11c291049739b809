from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="TrackedUpload",
            fields=[
                ("upload_id", models.CharField(max_length=128, primary_key=True, serialize=False)),
                ("owner", models.CharField(db_index=True, max_length=255)),
                ("state", models.CharField(db_index=True, max_length=16)),
                ("record", models.JSONField(default=dict)),
                ("record_updated_at", models.CharField(blank=True, default="", max_length=40)),
                ("signalled", models.JSONField(default=list)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "tracked upload",
            },
        ),
        migrations.CreateModel(
            name="WebhookDelivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("webhook_id", models.CharField(max_length=255, unique=True)),
                ("event_type", models.CharField(max_length=64)),
                ("upload_id", models.CharField(blank=True, default="", max_length=128)),
                ("received_at", models.DateTimeField(auto_now_add=True, db_index=True)),
            ],
            options={
                "verbose_name_plural": "webhook deliveries",
            },
        ),
    ]
