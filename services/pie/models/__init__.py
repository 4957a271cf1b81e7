"""Model pies shipped as data: one YAML file per model (``description`` and ``pie``, a
PieSpec). The key is the file's name without ``.yaml``. They are read-only: applying one
copies its tree into the account's pie."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from shared.contracts import ModelPie, PieSpec

_DIR = Path(__file__).parent


@cache
def all_models() -> tuple[ModelPie, ...]:
    out = []
    for path in sorted(_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        out.append(ModelPie(key=path.stem, description=data["description"], pie=PieSpec.model_validate(data["pie"])))
    return tuple(out)


def model(key: str) -> ModelPie | None:
    return next((m for m in all_models() if m.key == key), None)
