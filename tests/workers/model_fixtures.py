"""Shared data for the built-in model's tests: fixed sentences and a cosine helper."""

from __future__ import annotations

import math
from collections.abc import Sequence

GUITAR, PARAPHRASE, UNRELATED = (
    "A man is playing a guitar.",
    "Someone plays the guitar.",
    "The stock market fell today.",
)

# (anchor, paraphrase, unrelated): the paraphrase must be nearer the anchor than the other.
TRIPLES = [
    (GUITAR, PARAPHRASE, UNRELATED),
    ("How do I reset my password?", "I forgot my password, how can I change it?", "Bananas have potassium."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Interest rates rose again."),
    ("The train to Berlin is delayed.", "The Berlin train is running late.", "She painted the fence blue."),
    ("Kafka stores events in partitions.", "Events are kept in Kafka's partitions.", "The soup needs salt."),
]

_LONG = " ".join(f"token{i % 97} and more words" for i in range(200))  # far past 256 word pieces

# 50 fixed sentences for the backends' agreement check: short and long, punctuation, digits,
# mixed case, accents, non-Latin scripts, an empty string and one past the truncation length.
SENTENCES = [
    GUITAR,
    PARAPHRASE,
    UNRELATED,
    "A woman is slicing an onion.",
    "Two dogs are running through a field of snow.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "Bananas are rich in potassium.",
    "The cat sleeps on the sofa.",
    "A kitten is napping on the couch.",
    "Interest rates rose by half a point.",
    "The train to Berlin is delayed.",
    "The Berlin train is running late.",
    "She painted the fence blue.",
    "Kafka stores events in partitions.",
    "Events are kept in Kafka's partitions.",
    "The soup needs more salt.",
    "Order #48213 shipped on 2024-03-17 at 09:41 UTC.",
    "ERROR: connection refused (errno 111) while contacting 127.0.0.1:9092",
    "def embed(texts): return model.encode(texts)",
    "SELECT count() FROM jobs WHERE status = 'failed'",
    "THE MEETING IS CANCELLED!!!",
    "the meeting is cancelled",
    "Crème brûlée, jalapeño and façade are borrowed words.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El tren llega tarde a la estación.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "I love this product 😀👍",
    "?!",
    "",
    "a",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The mitochondria is the powerhouse of the cell.",
    "Quantum computers use qubits that can be in superposition.",
    "The Treaty of Westphalia was signed in 1648.",
    "Please review the attached invoice and confirm payment by Friday.",
    "Our quarterly revenue grew 12% year over year.",
    "He scored the winning goal in the final minute.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Turn left at the second traffic light, then continue for 300 metres.",
    "Symptoms include fever, cough and fatigue.",
    "The patient was discharged after a two-day observation.",
    "Refunds are processed within five business days.",
    "The river flooded the village after three days of heavy rain.",
    "Birds migrate south for the winter.",
    "Use exponential backoff with jitter when retrying requests.",
    _LONG,
]


def token_ids(text: str) -> list[int]:
    """Ids of ``text`` from the model's own tokenizer, as a client holding it would send them."""
    from tokenizers import Tokenizer

    from workers.models.onnx_backend import TOKENIZER_PATH

    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.no_padding()  # the file pads to 128; a client sends only the real tokens
    return tokenizer.encode(text).ids


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors."""
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        math.fsum(x * x for x in a) * math.fsum(y * y for y in b)
    )
