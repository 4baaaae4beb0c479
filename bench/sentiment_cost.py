"""What one local sentiment call can cost: `make bench-sentiment`.

VADER (vaderSentiment 3.3.2) is timed as the library ships it and as this service runs it
(inference/sentiment.py: the same answers, two checks given a window instead of the whole text,
its "but" rule in n log n, and at most SENTIMENT_MAX_WORDS words read), on the kinds of text that
cost it most, at growing lengths; then the most a request can carry (SENTIMENT_MAX_TEXTS texts of
SENTIMENT_MAX_CHARS characters) of the costliest kind found. CPU seconds of this process, the best
of a few runs: the machine's other load does not count against them.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings.dev")

import django

django.setup()

from django.conf import settings  # noqa: E402
from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentimentIntensityAnalyzer  # noqa: E402

from inference import sentiment  # noqa: E402

LIBRARY = SentimentIntensityAnalyzer()
OURS = sentiment._vader()
# The library's cost grows with the square of the words; past this it takes minutes, so it is not run.
LIBRARY_MAX_CHARS = 2000


def cpu_seconds(call: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        call()
        best = min(best, time.process_time() - started)
    return best


def _kinds() -> dict[str, Callable[[int], str]]:
    rng = random.Random(7)
    lexicon = list(OURS.lexicon)
    by_valence: dict[float, str] = {}
    for word in lexicon:
        by_valence.setdefault(OURS.lexicon[word], word)
    distinct = list(by_valence.values())
    emoji = [key for key in OURS.emojis if len(key) == 1]
    longest_emoji = max(emoji, key=lambda key: len(OURS.emojis[key].split()))

    def words(pick: Callable[[int], str], chars: int, start: str = "") -> str:
        text, index = start, 0
        while len(text) < chars:
            text += pick(index) + " "
            index += 1
        return text[:chars]

    return {
        "plain English": lambda n: words(lambda i: rng.choice(["the", "train", "leaves", "at", "noon", "and"]), n),
        "sentiment words": lambda n: words(lambda i: rng.choice(lexicon), n),
        '"but" + distinct scores + boosters': lambda n: words(
            lambda i: distinct[i % len(distinct)] if i % 2 else rng.choice(list(BOOSTER_DICT)[:20]), n, "but "
        ),
        "one emoji repeated (6 words each)": lambda n: longest_emoji * n,
        "random emoji": lambda n: "".join(rng.choice(emoji) for _ in range(n)),
        "two-letter emoticons": lambda n: words(lambda i: rng.choice([":)", ":(", "xD", ":D", ";)"]), n),
    }


def main() -> None:
    kinds = _kinds()
    max_chars, max_texts = settings.SENTIMENT_MAX_CHARS, settings.SENTIMENT_MAX_TEXTS
    limits = f"SENTIMENT_MAX_CHARS={max_chars}, SENTIMENT_MAX_TEXTS={max_texts}"
    print(f"{limits}, SENTIMENT_MAX_WORDS={settings.SENTIMENT_MAX_WORDS}")
    print(f"{'kind of text':38s} {'chars':>6s} {'library':>10s} {'this service':>13s}")
    worst_kind, worst = "", 0.0
    for name, make in kinds.items():
        for chars in (500, 1000, 2000, max_chars):
            text = make(chars)
            ours = cpu_seconds(lambda text=text: sentiment.analyse_local([text]))
            library = (
                f"{cpu_seconds(lambda text=text: LIBRARY.polarity_scores(text)) * 1000:8.1f} ms"
                if chars <= LIBRARY_MAX_CHARS
                else "(not run)"
            )
            print(f"{name:38s} {chars:6d} {library:>10s} {ours * 1000:10.1f} ms")
            if chars == max_chars and ours > worst:
                worst_kind, worst = name, ours
    batch = [kinds[worst_kind](max_chars) for _ in range(max_texts)]
    whole = cpu_seconds(lambda: sentiment.analyse_local(batch), runs=2)
    print(f"\nworst kind: {worst_kind}: {worst * 1000:.1f} ms of CPU for one text of {max_chars} characters")
    print(f"the most one request can carry ({max_texts} such texts): {whole:.2f} s of CPU")


if __name__ == "__main__":
    main()
