import uuid

from django.db import migrations, models


def one_version_each(apps, schema_editor):
    # AddField gives every existing row the same default: each cluster gets a version of its own.
    MeshState = apps.get_model("mesh", "MeshState")
    for pk in MeshState.objects.values_list("pk", flat=True):
        MeshState.objects.filter(pk=pk).update(snapshot_version=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("mesh", "0007_istio"),
    ]

    operations = [
        migrations.AddField(
            model_name="meshstate",
            name="snapshot_version",
            field=models.UUIDField(default=uuid.uuid4),
        ),
        migrations.RunPython(one_version_each, migrations.RunPython.noop),
    ]
