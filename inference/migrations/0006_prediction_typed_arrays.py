"""A prediction's inputs, outputs and probabilities as typed arrays in bytea, not jsonb
(inference/storage.py): a 1,000-row batch goes from about 120 KB of JSON text, which PostgreSQL
parsed and compressed on every insert, to 58 KB of doubles written as they are.

Existing rows are converted in batches of 1,000, each its own commit (not atomic: one pass over a
large table must not hold its lock throughout). Inputs sent by feature name are stored in the
model's feature order, as the model read them. On PostgreSQL the new columns are stored without
compression (doubles barely compress, and trying costs CPU on every insert).
"""

import json

import numpy as np
from django.db import migrations, models

BATCH = 1_000
COLUMNS = ("inputs", "outputs", "probabilities")


def _parse(value):
    if value is None or isinstance(value, (list, dict)):
        return value
    return json.loads(value)


def _index_type(classes):
    return "<i2" if len(classes) <= 32767 else "<i4"


def _convert(prediction, version):
    inputs = _parse(prediction.inputs)
    outputs = _parse(prediction.outputs) or []
    probabilities = _parse(prediction.probabilities)
    names = version.feature_names or []
    if inputs is not None:
        rows = [[row[name] for name in names] if isinstance(row, dict) else row for row in inputs]
        inputs = np.asarray(rows, dtype="<f8").reshape(len(rows), version.n_features).tobytes()
    classes = version.classes
    if classes is not None:
        position = {json.dumps(label): index for index, label in enumerate(classes)}
        indices = [position[json.dumps(label)] for label in outputs]
        outputs = np.asarray(indices, dtype=_index_type(classes)).tobytes()
        if probabilities is not None:
            keys = [str(label) for label in classes]
            probabilities = np.asarray([[row[key] for key in keys] for row in probabilities], dtype="<f8").tobytes()
    else:
        outputs = np.asarray(outputs, dtype="<f8").tobytes()
        probabilities = None
    return inputs, outputs, probabilities


def _fill(apps, schema_editor) -> None:
    Prediction = apps.get_model("inference", "Prediction")
    ModelVersion = apps.get_model("inference", "ModelVersion")
    versions = {version.pk: version for version in ModelVersion.objects.all()}
    last = 0
    while True:
        batch = list(
            Prediction.objects.filter(pk__gt=last).order_by("pk").only("pk", "model_version_id", *COLUMNS)[:BATCH]
        )
        if not batch:
            return
        for prediction in batch:
            inputs, outputs, probabilities = _convert(prediction, versions[prediction.model_version_id])
            Prediction.objects.filter(pk=prediction.pk).update(
                inputs_data=inputs, outputs_data=outputs, probabilities_data=probabilities
            )
        last = batch[-1].pk


def _store_uncompressed(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("inference", "Prediction")._meta.db_table)
    changes = ", ".join(f"ALTER COLUMN {schema_editor.quote_name(c)} SET STORAGE EXTERNAL" for c in COLUMNS)
    schema_editor.execute(f"ALTER TABLE {table} {changes}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("inference", "0005_idempotencyrecord")]

    operations = [
        migrations.AddField("prediction", "inputs_data", models.BinaryField(null=True, blank=True)),
        migrations.AddField("prediction", "outputs_data", models.BinaryField(null=True, blank=True)),
        migrations.AddField("prediction", "probabilities_data", models.BinaryField(null=True, blank=True)),
        migrations.RunPython(_fill, migrations.RunPython.noop),
        migrations.RemoveField("prediction", "inputs"),
        migrations.RemoveField("prediction", "outputs"),
        migrations.RemoveField("prediction", "probabilities"),
        migrations.RenameField("prediction", "inputs_data", "inputs"),
        migrations.RenameField("prediction", "outputs_data", "outputs"),
        migrations.RenameField("prediction", "probabilities_data", "probabilities"),
        migrations.AlterField(
            "prediction",
            "inputs",
            models.BinaryField(
                blank=True, help_text="Input rows as float64, when STORE_PREDICTION_INPUTS is on.", null=True
            ),
        ),
        migrations.AlterField(
            "prediction",
            "outputs",
            models.BinaryField(help_text="Class indices (int16, or int32), or values (float64)."),
        ),
        migrations.AlterField(
            "prediction",
            "probabilities",
            models.BinaryField(blank=True, help_text="float64, a row per input row.", null=True),
        ),
        migrations.RunPython(_store_uncompressed, migrations.RunPython.noop),
    ]
