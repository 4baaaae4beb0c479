"""The tutorial's bare Flask app (../shared/seeds/003): parse JSON, model.predict, jsonify.

Measured beside this service by `make bench`, on the same model file and worker count. Batches
go through the same lines with `instances` in place of `features`.
"""

import os

import joblib
import numpy as np
from flask import Flask, jsonify, request

app = Flask(__name__)
model = joblib.load(os.environ["BENCH_MODEL_PATH"])


@app.route("/predict", methods=["POST"])
def predict():  # noqa: ANN201 - the tutorial's code, as written
    data = request.get_json()
    if not data or ("features" not in data and "instances" not in data):
        return jsonify({"error": "Invalid input: 'features' is missing."}), 400
    try:
        if "instances" in data:
            features = np.array(data["instances"])
        else:
            features = np.array(data["features"]).reshape(1, -1)
        prediction = model.predict(features)
        return jsonify({"prediction": prediction.tolist()})
    except Exception as e:
        return jsonify({"error": str(e)}), 500
