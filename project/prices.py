"""What upstream tokens cost: the price table (settings.LLM_PRICES) and the estimate of a call.

Prices are per million tokens, prompt and completion apart, in settings.LLM_PRICE_CURRENCY. The
table ships with OpenAI's list prices for its common models; LLM_PRICES (JSON) adds models or
changes prices, and a model set to null is taken out:

    LLM_PRICES='{"my-llama": {"prompt": 0.1, "completion": 0.2}, "gpt-4o": null}'

A call's cost is estimated when it is recorded, at the prices then in force, so changing the
table changes the cost of later calls only (as a bill would). A model not in the table has no
price: its tokens are counted as unpriced, never as free.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

# USD per 1M tokens: OpenAI's list prices (standard tier) for these models, 2025.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-4o-mini": {"prompt": 0.15, "completion": 0.60},
    "gpt-4o": {"prompt": 2.50, "completion": 10.00},
    "gpt-4.1": {"prompt": 2.00, "completion": 8.00},
    "gpt-4.1-mini": {"prompt": 0.40, "completion": 1.60},
    "gpt-4.1-nano": {"prompt": 0.10, "completion": 0.40},
    "o4-mini": {"prompt": 1.10, "completion": 4.40},
    "text-embedding-3-small": {"prompt": 0.02, "completion": 0.0},
    "text-embedding-3-large": {"prompt": 0.13, "completion": 0.0},
}


class PriceTableError(ValueError):
    pass


@dataclass(frozen=True)
class Price:
    prompt: float  # per 1M prompt tokens
    completion: float  # per 1M completion tokens

    def cost(self, prompt_tokens: Any, completion_tokens: Any) -> Any:
        """What the tokens cost: of ints a float; of numpy arrays or query expressions, the same."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1_000_000


def _price(model: str, value: Any) -> Price:
    if not isinstance(value, dict) or set(value) != {"prompt", "completion"}:
        raise PriceTableError(f'LLM_PRICES[{model!r}] must be {{"prompt": <number>, "completion": <number>}}')
    numbers = [value["prompt"], value["completion"]]
    if not all(type(n) in (int, float) and math.isfinite(n) and n >= 0 for n in numbers):
        raise PriceTableError(f"LLM_PRICES[{model!r}]: prices must be numbers of at least 0")
    return Price(prompt=float(numbers[0]), completion=float(numbers[1]))


def price_table(raw: str) -> dict[str, Price]:
    """The default table with LLM_PRICES (a JSON object, may be empty) applied over it."""
    table = {model: _price(model, value) for model, value in DEFAULT_PRICES.items()}
    if not raw.strip():
        return table
    try:
        changes = json.loads(raw)
    except ValueError as exc:
        raise PriceTableError(f"LLM_PRICES is not JSON: {exc}") from None
    if not isinstance(changes, dict):
        raise PriceTableError("LLM_PRICES must be a JSON object of model names")
    for model, value in changes.items():
        if value is None:
            table.pop(model, None)
        else:
            table[model] = _price(model, value)
    return table


# A dated snapshot's suffix: "-2024-07-18" (gpt-4o-mini-2024-07-18) or "-0613" (gpt-4-0613).
_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


def price_of(model: str, table: dict[str, Price]) -> Price | None:
    """The model's price: its own entry, else that of the model it is a dated snapshot of
    ("gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini"), else None. Other variants
    (gpt-4o-audio-preview, a fine-tune) are priced differently, so they have no price until the
    table gives them one."""
    if model in table:
        return table[model]
    return table.get(_DATED.sub("", model))


@dataclass(frozen=True)
class Cost:
    amount: float  # in the table's currency
    unpriced_tokens: int  # tokens of a model the table has no price for


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> Cost:
    """The estimated cost of a call's tokens at the prices in settings."""
    if not prompt_tokens and not completion_tokens:
        return Cost(0.0, 0)
    from django.conf import settings  # here, so that the settings module can import this one

    price = price_of(model, settings.LLM_PRICES)
    if price is None:
        return Cost(0.0, prompt_tokens + completion_tokens)
    return Cost(price.cost(prompt_tokens, completion_tokens), 0)
