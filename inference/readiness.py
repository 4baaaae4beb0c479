from __future__ import annotations

from inference import runtime
from inference.models import ModelVersion
from project.errors import ModelUnavailable


def models_ready(*, default_model: str) -> str | None:
    """None when every active model file is present and the default model loads; else why not."""
    active = list(ModelVersion.objects.filter(is_active=True))
    if not active:
        return "no models registered (run: python manage.py train_demo_models)"
    missing = sorted(str(m) for m in active if not runtime.model_path(m.file).is_file())
    if missing:
        return f"model files missing: {', '.join(missing)}"
    default = next((m for m in active if m.name == default_model), None)
    if default is None:
        return f"the default model '{default_model}' is not registered"
    try:
        runtime.load(default)
    except ModelUnavailable as exc:
        return exc.message
    return None
