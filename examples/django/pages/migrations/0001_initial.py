from django.conf import settings
from django.db import migrations, models


def log_run(apps, schema_editor):
    """Append a line to var/migrations.log: the deploy tests count how often this ran, and where."""
    with open(settings.VAR_DIR / "migrations.log", "a") as log:
        log.write("0001_initial applied\n")


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Visit",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(auto_now_add=True)),
                ("revision", models.CharField(max_length=64)),
            ],
        ),
        migrations.RunPython(log_run, migrations.RunPython.noop),
    ]
