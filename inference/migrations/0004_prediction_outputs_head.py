"""The first outputs of each prediction kept beside the full ones, so a list page reads a few
bytes per prediction instead of whole batches (a page of 50 batches of 10,000 rows used to load
tens of megabytes into the worker). Existing rows get theirs from their outputs, 10,000 at a
time, each batch its own commit (not atomic: one UPDATE of a large table would hold its lock for
the whole of it). A row a worker of the previous version writes during a rolling deploy lists
`first_outputs: null`; its detail is whole."""

from django.db import migrations, models

HEAD = 10
BATCH = 10_000


def _fill(apps, schema_editor) -> None:
    Prediction = apps.get_model("inference", "Prediction")
    connection = schema_editor.connection
    table = schema_editor.quote_name(Prediction._meta.db_table)
    last = Prediction.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for start in range(0, last + 1, BATCH):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET outputs_head = jsonb_path_query_array(outputs, '$[0 to {HEAD - 1}]') "
                    "WHERE id >= %s AND id < %s AND outputs_head IS NULL",
                    [start, start + BATCH],
                )
            continue
        batch = Prediction.objects.filter(id__gte=start, id__lt=start + BATCH, outputs_head__isnull=True)
        for prediction in batch.only("id", "outputs"):
            Prediction.objects.filter(pk=prediction.pk).update(outputs_head=(prediction.outputs or [])[:HEAD])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("inference", "0003_prediction_lz4_compression")]

    operations = [
        migrations.AddField(
            model_name="prediction",
            name="outputs_head",
            field=models.JSONField(blank=True, help_text="The first 10 outputs, for lists.", null=True),
        ),
        migrations.RunPython(_fill, migrations.RunPython.noop),
    ]
