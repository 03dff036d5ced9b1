#!/usr/bin/env python3
"""Generate the synthetic sentiment task bundled for `vkprompt demo`.

Writes tools/demo/train.jsonl and tools/demo/validation.jsonl, one {"input": ..., "target": ...} object per line,
target "positive" or "negative".

Why synthetic: the demo runs offline on a fresh machine, so the data must ship with the repository, and it must be
something a soft prompt on a *random-weight* tiny T5 can visibly learn in a few hundred steps. Every review is
built from templates whose slots are filled with words that each carry the label (2 or 3 sentiment cues per
review, never a mixed review, no negation tricks), so a bag of input embeddings already separates the classes a
little even when the encoder is random. The rest of each sentence (nouns, intensifiers, glue words) is drawn
independently of the label and so carries no signal.

Deterministic: one seeded random.Random drives every choice, the word lists below are fixed tuples, and the output
is written in generation order, so re-running this script reproduces the committed files byte for byte. No network,
no external data; standard library only (any Python 3.8+).

    python3 tools/demo/make_data.py            # rewrites the two .jsonl files next to this script
"""

import json
import os
import random
import re

SEED = 20240601
TRAIN_SIZE = 1000  # per split, exactly half of each label
VALIDATION_SIZE = 200

HERE = os.path.dirname(os.path.abspath(__file__))

# Things a review can be about. Label-neutral: each is drawn independently of the label.
NOUNS = (
    "movie", "film", "plot", "acting", "soundtrack", "ending", "script", "cast",
    "hotel", "room", "staff", "breakfast", "pool", "view", "bed",
    "food", "service", "pizza", "coffee", "waiter", "menu", "dessert", "soup",
    "phone", "battery", "screen", "camera", "laptop", "keyboard", "charger", "speaker",
    "book", "story", "author", "chapter", "game", "graphics", "music",
    "shoes", "jacket", "bag", "headphones", "app", "update", "delivery", "seller",
    "car", "engine", "seats", "concert", "band", "show", "museum", "tour", "guide", "trip",
)

# Label-neutral modifiers and glue.
ADVERBS = ("very", "really", "truly", "quite", "so", "pretty", "rather", "extremely", "just", "fairly")
ATTRIBUTIVE_ADVERBS = ("very", "really", "truly", "pretty", "rather", "extremely", "fairly")  # fit "a ___ great X"
OPENERS = ("Overall", "Honestly", "To be fair", "In short", "Well", "Frankly", "All in all", "So")
PEOPLE = ("my friends", "my sister", "the reviews", "everyone", "my partner", "the critics", "my kids")

# The label-bearing words. Kept as disjoint, unambiguous sets: the point is an obvious lexical signal. Generic
# evaluative adjectives rather than domain-specific ones ("tasty", "rude"), because nouns and adjectives are paired
# at random and "a tasty battery" would read as nonsense.
POSITIVE_ADJECTIVES = (
    "great", "excellent", "wonderful", "amazing", "fantastic", "delightful", "superb", "brilliant",
    "lovely", "perfect", "charming", "enjoyable", "pleasant", "impressive", "outstanding", "beautiful",
    "fun", "good", "nice", "solid", "fabulous", "reliable", "marvelous", "smooth", "clever", "helpful",
    "pleasing", "splendid", "gorgeous", "terrific",
)
NEGATIVE_ADJECTIVES = (
    "terrible", "awful", "horrible", "boring", "dull", "bad", "poor", "disappointing", "dreadful",
    "mediocre", "annoying", "ugly", "pathetic", "lousy", "slow", "cheap", "bland", "painful", "useless",
    "tedious", "frustrating", "shoddy", "flimsy", "clumsy", "confusing", "weak", "messy", "unpleasant",
    "overpriced", "sloppy",
)
POSITIVE_PHRASES = (
    "I loved it", "highly recommended", "worth every penny", "I will come back", "it made my day",
    "I enjoyed every minute", "five stars", "a real pleasure", "I was very happy", "totally worth it",
    "a joy from start to finish", "I would buy it again",
)
NEGATIVE_PHRASES = (
    "I hated it", "a waste of money", "never again", "avoid it", "it ruined my day",
    "I regret buying it", "one star", "a total letdown", "I was very upset", "not worth it",
    "a mess from start to finish", "I want a refund",
)

# Each template has two or three sentiment slots ({a1}, {a2}, {a3}: adjectives, {p}: phrase) that are all filled
# from the same label's lists, plus label-neutral slots. {A1}/{P} are the capitalised forms at a sentence start.
TEMPLATES = (
    "The {n1} was {adv} {a1} and the {n2} was {a2}.",
    "{A1} {n1}, {a2} {n2}. {P}.",
    "{P}. The {n1} felt {adv} {a1}.",
    "What a {a1} {n1}! The {n2} was {a2} too.",
    "I found the {n1} {adv} {a1}, and the {n2} {a2}.",
    "{opener}, the {n1} is {a1}. {P}.",
    "{A1} {n1}. {A2} {n2}. {A3} {n3}.",
    "{People} said the {n1} was {a1}, and I agree: {p}.",
    "The {n1} looked {a1} and the {n2} sounded {a2}. {P}.",
    "{opener}, a {a1} {n1} with a {attr} {a2} {n2}.",
    "Tried the {n1} last week. {A1} {n2}, {p}.",
    "Our {n1} was {a1}, the {n2} {a2}, and the {n3} {a3}.",
)

LABELS = ("positive", "negative")


def cap(s):
    return s[0].upper() + s[1:]


def make_review(rng, label):
    """One review of the given label: every sentiment slot from that label's lists, the rest label-neutral."""
    adjectives = POSITIVE_ADJECTIVES if label == "positive" else NEGATIVE_ADJECTIVES
    phrases = POSITIVE_PHRASES if label == "positive" else NEGATIVE_PHRASES
    template = rng.choice(TEMPLATES)
    n1, n2, n3 = rng.sample(NOUNS, 3)  # distinct nouns so a review never says "the food ... the food"
    a1, a2, a3 = rng.sample(adjectives, 3)
    p = rng.choice(phrases)
    text = template.format(
        n1=n1, n2=n2, n3=n3, a1=a1, a2=a2, a3=a3, A1=cap(a1), A2=cap(a2), A3=cap(a3),
        p=p, P=cap(p), adv=rng.choice(ADVERBS), attr=rng.choice(ATTRIBUTIVE_ADVERBS), opener=rng.choice(OPENERS),
        People=cap(rng.choice(PEOPLE)),
    )
    # Templates say "a"; before a vowel sound English says "an" ("an awful", "an extremely"; but "a useless").
    return re.sub(r"\b([Aa]) (?=[aeiou])(?!use)", r"\1n ", text)


def make_split(rng, size, taken):
    """size distinct reviews, exactly half per label, none in `taken` (which it extends), in shuffled order."""
    rows = []
    for label in LABELS:
        made = 0
        while made < size // 2:
            text = make_review(rng, label)
            if text in taken:
                continue  # keeps train and validation disjoint and each split free of duplicates
            taken.add(text)
            rows.append({"input": text, "target": label})
            made += 1
    rng.shuffle(rows)
    return rows


def write_jsonl(path, rows):
    # ensure_ascii=False keeps the files readable; the generated text is plain ASCII anyway.
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    rng = random.Random(SEED)
    taken = set()
    train = make_split(rng, TRAIN_SIZE, taken)
    validation = make_split(rng, VALIDATION_SIZE, taken)
    write_jsonl(os.path.join(HERE, "train.jsonl"), train)
    write_jsonl(os.path.join(HERE, "validation.jsonl"), validation)
    print(f"train: {len(train)} lines, validation: {len(validation)} lines")


if __name__ == "__main__":
    main()
