"""What a model call costs: one price table, in USD per million tokens.

The gateway records the tokens the API reported for every call
(`ModelCalled`); this module turns them into an estimate. Prices change and
new models appear, so the owner may override or extend the table in
`~/.config/nanoclaw/model-prices.json`. A model matches the longest prefix
in the table that ends where a part of the name ends (`claude-sonnet-4-5-20250929`
is priced as `claude-sonnet-4`, while `claude-opus-4-10` is not `claude-opus-4-1`);
a model that matches none has no estimate, never a guessed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
from loguru import logger

PRICES_FILE = "model-prices.json"
MILLION = 1_000_000
CACHE_WRITE_FACTOR = 1.25   # a 5-minute cache write, relative to the input price
CACHE_READ_FACTOR = 0.10    # a cache hit, relative to the input price

Price = Annotated[float, msgspec.Meta(ge=0)]


class ModelPrice(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """USD per million tokens; the cache prices default to the API's usual factors of the input price."""

    input: Price
    output: Price
    cache_write: Price | None = None
    cache_read: Price | None = None

    def cost(self, usage: "Tokens") -> float:
        write = self.cache_write if self.cache_write is not None else self.input * CACHE_WRITE_FACTOR
        read = self.cache_read if self.cache_read is not None else self.input * CACHE_READ_FACTOR
        return (usage.input_tokens * self.input + usage.output_tokens * self.output
                + usage.cache_creation_input_tokens * write + usage.cache_read_input_tokens * read) / MILLION


@dataclass(frozen=True)
class Tokens:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


# Anthropic's published list prices (platform.claude.com, "Pricing"), by model-name prefix.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-fable-5": ModelPrice(10.0, 50.0),
    "claude-opus-5": ModelPrice(5.0, 25.0),
    "claude-opus-4-5": ModelPrice(5.0, 25.0),
    "claude-opus-4-6": ModelPrice(5.0, 25.0),
    "claude-opus-4-7": ModelPrice(5.0, 25.0),
    "claude-opus-4-8": ModelPrice(5.0, 25.0),
    "claude-opus-4-1": ModelPrice(15.0, 75.0),
    "claude-opus-4-0": ModelPrice(15.0, 75.0),
    "claude-opus-4-20250514": ModelPrice(15.0, 75.0),  # Opus 4 itself
    "claude-sonnet-4": ModelPrice(3.0, 15.0),
    "claude-3-7-sonnet": ModelPrice(3.0, 15.0),
    "claude-haiku-4-5": ModelPrice(1.0, 5.0),
    "claude-3-5-haiku": ModelPrice(0.80, 4.0),
    "claude-3-haiku": ModelPrice(0.25, 1.25),
}


class PriceError(ValueError):
    """The owner's price file is unreadable; the message names the file and the problem."""


class PriceTable:
    def __init__(self, prices: dict[str, ModelPrice]):
        self.prices = prices
        self._prefixes = sorted(prices, key=len, reverse=True)

    @classmethod
    def load(cls, config_dir: Path) -> "PriceTable":
        """The defaults, with the owner's file (if any) laid over them."""
        path = config_dir / PRICES_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(dict(DEFAULT_PRICES))
        except OSError as exc:
            raise PriceError(f"{path}: cannot read it ({exc.strerror})") from exc
        try:
            custom = msgspec.json.decode(raw, type=dict[str, ModelPrice])
        except msgspec.DecodeError as exc:
            raise PriceError(f"{path}: {exc} (expected {{\"model-prefix\": {{\"input\": 3, \"output\": 15}}}})") \
                from exc
        return cls({**DEFAULT_PRICES, **custom})

    @classmethod
    def load_or_defaults(cls, config_dir: Path) -> "PriceTable":
        """`load`, but a broken owner's file gives the defaults and a warning (`nanoclaw usage` names it)."""
        try:
            return cls.load(config_dir)
        except PriceError as exc:
            logger.warning("using the built-in model prices: {}", exc)
            return cls(dict(DEFAULT_PRICES))

    def price_of(self, model: str) -> ModelPrice | None:
        return next((self.prices[p] for p in self._prefixes if _prefix_of(p, model)), None)

    def cost(self, model: str, usage: Tokens) -> float | None:
        """The estimate in USD, or None when the model has no price."""
        price = self.price_of(model)
        return None if price is None else price.cost(usage)

    def cost_at_most(self, model: str, usage: Tokens) -> float:
        """For caps: the model's price, or the dearest in the table when it has none.

        The agent chooses the model of each call, so one missing from the
        table must not be a way past a budget.
        """
        price = self.price_of(model)
        if price is not None:
            return price.cost(usage)
        return max(known.cost(usage) for known in self.prices.values())


def _prefix_of(prefix: str, model: str) -> bool:
    """`prefix` starts `model` and ends where a part of its name ends (claude-opus-4-1 is not claude-opus-4-10)."""
    if not model.startswith(prefix):
        return False
    rest = model[len(prefix):]
    return not rest or not prefix[-1:].isalnum() or not rest[0].isalnum()
