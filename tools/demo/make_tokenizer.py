#!/usr/bin/python3
"""Train tools/demo/spiece.model, the SentencePiece tokenizer of the `vkprompt demo` checkpoint, and write
tools/demo/tokens.jsonl, the expected ids that tests/Model/DemoAssetsTests.cs checks our C# tokenizer against.

The model follows T5's conventions so the demo checkpoint goes through exactly the code path of a real T5:
Unigram, <pad>=0, </s>=1, <unk>=2, no <s>, nmt_nfkc normalization (the rule T5's spiece.model was built with; its
precompiled charsmap is 237 KB of the file's 246 KB), dummy prefix, collapsed whitespace, no byte fallback. 1000
pieces; T5Tokenizer adds the 100 <extra_id_N> sentinels after them.

Training text: the demo's train.jsonl (inputs and the label words), so the task's words become whole pieces and
inputs stay short, plus a page of general English written for this script (below), so that words the task never
uses still split into sub-word pieces rather than <unk>; a line of every printable ASCII character makes sure no
ASCII text ever hits <unk>. Validation text is left out on purpose: that it still encodes without <unk> is checked.

Deterministic: fixed input order, no sentence sampling or shuffling, one training thread (EM sums are grouped by
thread, so the bits depend on the thread count), a fixed random seed. Rerunning reproduces spiece.model and
tokens.jsonl byte for byte with the same sentencepiece version (made with Debian bookworm's python3-sentencepiece
0.1.97). No network.

    apt-get install -y python3-sentencepiece
    /usr/bin/python3 tools/demo/make_data.py        # first, if the data changed
    /usr/bin/python3 tools/demo/make_tokenizer.py   # Debian's python: a pyenv python won't see the apt module
"""

import collections
import io
import json
import os

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB_SIZE = 1000
SEED = 20240601
MAX_INPUT_TOKENS = 32  # budget for an input including </s>; this script fails if the data exceeds it
EXPECTED_SAMPLE = 40  # inputs per split whose ids go into tokens.jsonl (the file is meant to stay small)

# General English, written for this script (no external text). Varied everyday vocabulary so the Unigram model
# learns common English sub-words, not only the demo's review words.
GENERAL_ENGLISH = """\
The quick brown fox jumps over the lazy dog.
It was a cold morning, and the children walked to school through the snow.
She opened the window, looked at the garden, and decided to plant more flowers this year.
We will meet at the station at half past seven, unless the train is late again.
Scientists measure the temperature of the ocean to understand how the climate is changing.
The committee discussed the budget for three hours before anyone agreed on a number.
He fixed the bicycle with an old wrench and a piece of wire.
Please read the instructions carefully before you install the software.
Our neighbours keep chickens, two goats and a very patient cat.
The library closes early on Sundays, so bring your books back on Saturday.
Water boils at one hundred degrees at sea level, but at a lower temperature in the mountains.
They built a small bridge across the river in the summer of 1998.
My grandmother taught me how to bake bread, make soup and mend a shirt.
The teacher asked the students to write a short essay about their favourite animal.
A good map shows roads, rivers, towns, forests and the distance between them.
After the storm, the village had no electricity for two days.
The company hired forty new workers and opened an office in another city.
Doctors recommend walking, sleeping well and drinking enough water every day.
The museum displays paintings, sculptures, coins and ancient tools.
I usually drink tea in the afternoon and coffee in the morning.
The government announced new rules for schools, hospitals and public transport.
Farmers harvest wheat in late summer when the fields turn golden.
The computer stopped responding, so she saved her work and restarted it.
Every language has its own grammar, sounds and ways of telling stories.
The football match ended in a draw after extra time.
Birds migrate south in autumn and return north in spring.
The engineer explained why the machine needed a stronger motor.
Could you tell me where the nearest pharmacy is, please?
Yesterday I received a letter from an old friend who lives abroad.
The price of vegetables rose sharply because of the dry weather.
Mathematics, history, physics, chemistry, biology and geography are taught here.
The orchestra played a symphony, and the audience stood up to applaud.
Remember to lock the door, turn off the lights and feed the fish.
The journey took six hours by bus, including a stop for lunch.
People often think differently when they are tired, hungry or worried.
This question is difficult, but the answer is simple once you see it.
The garden behind the house is full of apple trees, roses and tall grass.
Information travels quickly across the internet, sometimes too quickly.
The weather forecast promised sunshine, yet it rained heavily all weekend.
Several passengers complained that the airport was crowded and the signs were confusing.
The recipe calls for flour, butter, sugar, eggs, salt, milk and a pinch of cinnamon.
Thousands of volunteers cleaned the beaches after the oil spill last autumn.
Her brother works as a nurse at the hospital near the harbour.
The detective noticed footprints beside the fence and a broken lock on the gate.
Modern telescopes can photograph galaxies billions of kilometres away.
The village council voted to repair the old church tower and widen the main street.
Students who practise regularly usually remember vocabulary more easily.
The restaurant on the corner serves breakfast until eleven o'clock.
Our neighbour's dog barks whenever the postman delivers a parcel.
The factory produces furniture, cupboards, shelves and wooden toys.
A thunderstorm interrupted the outdoor wedding, but nobody seemed to mind.
Economists disagree about whether interest rates should rise next quarter.
The children built a snowman and decorated it with buttons and a scarf.
Pilots check the engines, fuel and instruments carefully before every flight.
The festival attracts musicians, dancers, painters and poets from many countries.
He apologised for arriving late and promised to explain everything tomorrow.
Electric vehicles are becoming cheaper, quieter and more popular each year.
The hikers followed a narrow path along the cliffs until sunset.
Researchers published their findings in a journal about medicine and genetics.
The shopkeeper wrapped the present in bright paper and tied it with ribbon.
Traffic was heavy on the motorway because of an accident near the bridge.
The ancient castle overlooks a valley where sheep graze beside the stream.
Firefighters rescued a kitten from the roof of the bakery.
The new policy encourages employees to cycle or walk to work.
A friendly stranger helped us carry our suitcases up the stairs.
The professor's lecture covered philosophy, ethics and the history of ideas.
Fishermen repaired their nets while seagulls circled above the boats.
The exhibition explores how inventions changed everyday life.
My cousin is learning to play the guitar, the piano and the violin.
Vaccines protect millions of people from dangerous diseases.
The election results were announced shortly after midnight.
Mountains, deserts, islands, lakes, jungles and glaciers cover the planet.
The manager organised a meeting to discuss customer feedback and quality.
Wolves, bears, foxes, deer, rabbits, squirrels, owls and eagles live in the forest.
Kitchen, bedroom, bathroom, garage, attic, cellar, balcony, hallway and staircase.
Shirt, trousers, skirt, dress, sweater, coat, gloves, socks, boots and hat.
Apple, banana, cherry, grape, lemon, mango, orange, peach, pear, plum and strawberry.
Doctor, lawyer, teacher, farmer, soldier, pilot, baker, plumber, painter, writer and scientist.
Beautifully, carefully, certainly, completely, especially, finally, generally, probably, recently, suddenly.
Imagine, improve, include, increase, introduce, investigate, justify, maintain, manage, prepare, protect, provide.
A review can be positive, negative, or mixed; was yours positive? Mine was negative.
Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday.
January, February, March, April, May, June, July, August, September, October, November, December.
One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, twenty, hundred, thousand, million.
Red, orange, yellow, green, blue, purple, black, white, brown and grey.
Who, what, where, when, why, how, which, whose, whom, whether, because, although, while, during, without.
Small, large, early, late, young, old, new, short, long, high, low, hot, warm, cool, cold, easy, hard, strong.
Mother, father, brother, sister, daughter, son, uncle, aunt, cousin, family, people, person, woman, man, child.
Ask, bring, build, buy, call, carry, change, choose, come, cut, draw, drive, eat, fall, feel, find, fly, forget.
Give, grow, hear, help, hold, keep, know, learn, leave, lend, let, listen, lose, make, mean, move, need, pay.
Play, put, reach, run, say, sell, send, show, sing, sit, speak, spend, stand, start, stay, take, think, throw.
Understand, wait, wake, want, wear, win, work, worry, write, answered, happened, looking, running, quickly.
Information, education, government, development, environment, situation, relationship, opportunity, experience.
Results: 3.14, 2.71, 42, 100%, $5.99, 1,000,000 and 7/8 of the total; call +1 (555) 010-9999 or write to a@b.org.
ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789
! " # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \\ ] ^ _ ` { | } ~
"""

# Strings beyond the demo data whose expected ids are also committed: general English, words the training text
# never had, the normalizer's edge cases (NFKC folding, odd whitespace), characters outside the vocabulary (one
# <unk> per run). None contains "<...>" special-token syntax, where HF-style splitting and raw
# sentencepiece.encode legitimately differ.
EXTRA_TEXTS = [
    "",
    "positive",
    "negative",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Photosynthesis converts sunlight into chemical energy.",
    "Xylophones and zebras quietly juggle kumquats.",
    "Supercalifragilisticexpialidocious!",
    "The movie was GREAT!!! 10/10, would watch again :)",
    "  leading and   repeated   spaces  ",
    "tabs\tand\nnewlines",
    "ｆｕｌｌ　ｗｉｄｔｈ ＡＢＣ １２３",
    "ﬁne ligatures and ① circled ½",
    "café naïve résumé",
    "日本語のテキスト",
    "emoji 🙂 here",
    "\u00a0non-breaking\u2003spaces\u00a0",
    "C# .NET 10 + Vulkan = fast?",
]


def train_lines():
    """The training text, in a fixed order: every train input, every train target, then the general English."""
    with open(os.path.join(HERE, "train.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    lines = [row["input"] for row in rows]
    # Every row's target, so each label word has its true (high) frequency. That alone does not make it a piece:
    # the trainer only seeds candidate pieces that occur in two or more *distinct* whitespace-separated words, and
    # a label only ever appears bare. The general English below therefore also uses the labels with punctuation
    # attached ("positive," "negative."); without that the labels came out as "▁pos i tive" and "▁ne ga tive".
    lines += [row["target"] for row in rows]
    lines += GENERAL_ENGLISH.splitlines()
    return lines, rows


def train_model(lines):
    spm.set_random_generator_seed(SEED)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="unigram",
        vocab_size=VOCAB_SIZE,
        character_coverage=1.0,  # keep every character seen (the ASCII line above): no <unk> for ASCII text
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        normalization_rule_name="nmt_nfkc",
        add_dummy_prefix=True,
        remove_extra_whitespaces=True,
        byte_fallback=False,  # T5 has none, and our C# tokenizer rejects byte pieces
        split_digits=False,  # as T5's
        input_sentence_size=0,  # use every line, no sampling
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=1,
    )
    return model.getvalue()


def main():
    lines, train_rows = train_lines()
    model_bytes = train_model(lines)
    path = os.path.join(HERE, "spiece.model")
    with open(path, "wb") as f:
        f.write(model_bytes)
    sp = spm.SentencePieceProcessor(model_file=path)
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert sp.id_to_piece(0) == "<pad>" and sp.id_to_piece(1) == "</s>" and sp.id_to_piece(2) == "<unk>"

    with open(os.path.join(HERE, "validation.jsonl"), encoding="utf-8") as f:
        validation_rows = [json.loads(line) for line in f]

    def ids(text):
        return sp.encode(text) + [sp.eos_id()]  # what T5Tokenizer.Encode returns for plain text

    # Expected ids for the C# test: the first inputs of each split, the label words, the extra strings.
    texts = [r["input"] for r in train_rows[:EXPECTED_SAMPLE]] + [r["input"] for r in validation_rows[:EXPECTED_SAMPLE]]
    texts += EXTRA_TEXTS
    with open(os.path.join(HERE, "tokens.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for text in texts:
            f.write(json.dumps({"text": text, "ids": ids(text)}, ensure_ascii=False) + "\n")

    # Report: what the demo needs from the tokenizer, and a hard failure if inputs got too long or hit <unk>.
    print(f"spiece.model: {len(model_bytes)} bytes, {sp.get_piece_size()} pieces; tokens.jsonl: {len(texts)} lines")
    for label in sorted({r["target"] for r in train_rows}):
        print(f"label {label!r}: pieces {sp.encode(label, out_type=str)} ids {ids(label)}")
    for name, rows in (("train", train_rows), ("validation", validation_rows)):
        lengths = [len(ids(r["input"])) for r in rows]
        unk = sum(sp.unk_id() in ids(r["input"]) for r in rows)
        hist = collections.Counter(lengths)
        mean = sum(lengths) / len(lengths)
        print(f"{name}: {len(rows)} inputs, tokens incl. </s>: min {min(lengths)} mean {mean:.1f} max {max(lengths)}, "
              f"<unk> in {unk}; histogram {dict(sorted(hist.items()))}")
        assert max(lengths) <= MAX_INPUT_TOKENS, f"{name} has an input over {MAX_INPUT_TOKENS} tokens"
        assert unk == 0, f"{name} has inputs with <unk>"


if __name__ == "__main__":
    main()
