"""The first outputs of each prediction kept beside the full ones, so a list page reads a few
bytes per prediction instead of whole batches (a page of 50 batches of 10,000 rows used to load
tens of megabytes into the worker). Existing rows get theirs from their outputs."""

from django.db import migrations, models

HEAD = 10


def _fill(apps, schema_editor) -> None:
    Prediction = apps.get_model("inference", "Prediction")
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(Prediction._meta.db_table)
        schema_editor.execute(
            f"UPDATE {table} SET outputs_head = jsonb_path_query_array(outputs, '$[0 to {HEAD - 1}]')"
        )
        return
    for prediction in Prediction.objects.only("id", "outputs").iterator(chunk_size=500):
        Prediction.objects.filter(pk=prediction.pk).update(outputs_head=(prediction.outputs or [])[:HEAD])


class Migration(migrations.Migration):
    dependencies = [("inference", "0003_prediction_lz4_compression")]

    operations = [
        migrations.AddField(
            model_name="prediction",
            name="outputs_head",
            field=models.JSONField(blank=True, help_text="The first 10 outputs, for lists.", null=True),
        ),
        migrations.RunPython(_fill, migrations.RunPython.noop),
    ]
