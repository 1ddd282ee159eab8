"""Search in the user's words: the sentence encoder, ``video-index labels`` and the
class choice behind ``search`` (exact names, stemmed words, meaning)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from beam_pipeline.models.spec import packaged_labels
from tests.helpers import run_cli
from video_index import class_match, text_encoder

KINETICS400 = list(packaged_labels("kinetics400"))

# Everyday phrasings, none holding the words of its class, and the class meant.
EVERYDAY = [
    ("a man splitting logs with an axe", "chopping wood"),
    ("kids doing cartwheels on the lawn", "cartwheeling"),
    ("shooting hoops in the driveway", "shooting basketball"),
    ("someone booting a football across a field", "kicking soccer ball"),
    ("cutting the grass in the back yard", "mowing lawn"),
    ("a child puffing out the flames on a birthday cake", "blowing out candles"),
    ("scrubbing my molars before bed", "brushing teeth"),
    ("riding big waves on a board in the ocean", "surfing water"),
    ("a toddler on all fours moving across the carpet", "crawling baby"),
    ("a barber giving a man a trim", "getting a haircut"),
    ("typing an email on a laptop", "using computer"),
    ("jumping out of a plane with a parachute", "skydiving"),
    ("pedalling along a dirt trail in the hills", "riding mountain bike"),
    ("taking my puppy out on a leash", "walking the dog"),
    ("putting the plates and forks out for dinner", "setting table"),
    ("giving the tomatoes in the garden a drink with a hose", "watering plants"),
    ("an old lady making a scarf with two needles and yarn", "knitting"),
    ("a chef rolling rice and raw fish", "making sushi"),
    ("frying sunny side up eggs in a pan", "cooking egg"),
    ("tossing a flying disc on the beach", "catching or throwing frisbee"),
    ("teenagers doing tricks on a skate deck", "skateboarding"),
    ("gliding across a frozen pond in blades", "ice skating"),
    ("tapping away on the ivory keys of a grand", "playing piano"),
    ("a kid jumping up and down on a springy mat in the garden", "bouncing on trampoline"),
    ("lighting up a cigarette outside", "smoking"),
    ("sipping a cold pint at the pub", "drinking beer"),
    ("clearing the driveway after a blizzard", "shoveling snow"),
    ("a girl sobbing with tears running down her face", "crying"),
    ("a couple smooching on a bench", "kissing"),
    ("building a little man out of snow with a carrot nose", "making snowman"),
    ("getting inked on the forearm", "getting a tattoo"),
    ("a farmer clipping the wool off a ewe", "shearing sheep"),
    ("a mechanic swapping a flat tyre on the roadside", "changing wheel"),
    ("doing chin-ups on a bar", "pull ups"),
    ("paddling down the river in a small boat", "canoeing or kayaking"),
    ("a rally at wimbledon with rackets", "playing tennis"),
    ("hanging baubles and lights on the tree for xmas", "decorating the christmas tree"),
    ("a magician mixing up a deck before a trick", "shuffling cards"),
    ("pouring cocktails behind a bar", "bartending"),
    ("slicing a big red melon", "cutting watermelon"),
]


def test_the_everyday_queries_hold_no_class_words():
    assert len(EVERYDAY) == 40 and len({q for q, _ in EVERYDAY}) == 40
    for query, meant in EVERYDAY:
        assert meant in KINETICS400, meant
        assert not class_match.match_classes(query, [meant]), query


@pytest.fixture(scope="module")
def encoder():
    return text_encoder.encoder()


def test_everyday_queries_find_the_class_meant(encoder):
    """The issue's bar: the class meant among the 3 nearest for at least 80 %."""
    ranks = {}
    for query, meant in EVERYDAY:
        found = [label for label, _ in text_encoder.nearest_labels(query, KINETICS400, 3)]
        ranks[query] = found.index(meant) + 1 if meant in found else None
    hits = sum(rank is not None for rank in ranks.values())
    missed = {q: r for q, r in ranks.items() if r is None}
    assert hits / len(EVERYDAY) >= 0.8, missed


def test_embeddings_are_unit_vectors_and_paraphrases_are_near(encoder):
    texts = ["a man is eating food", "a man eats a meal", "a car drives down the road"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.7 > 0.3 > vectors[0] @ vectors[2]
    # A batch pads its rows; the padding must not change an embedding.
    np.testing.assert_allclose(encoder.encode(texts[:1])[0], vectors[0], atol=1e-5)


def test_uncased_wordpiece():
    vocab = {t: i for i, t in enumerate(["[UNK]", "cart", "##wheel", "##ing", "kid", "##s", ","])}
    assert text_encoder.basic_tokens("Kids, CARTwheeling!") == ["kids", ",", "cartwheeling", "!"]
    assert text_encoder.basic_tokens("café  crème") == ["cafe", "creme"]
    assert text_encoder.wordpiece("cartwheeling", vocab) == [1, 2, 3]
    assert text_encoder.wordpiece("kids", vocab) == [4, 5]
    assert text_encoder.wordpiece("zebra", vocab) == [0]


def test_class_embeddings_are_computed_once(encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEO_INDEX_CACHE", str(tmp_path))
    labels = ["playing cricket", "golf putting", "chopping wood"]
    first = text_encoder.label_embeddings(labels, encoder)
    assert len(list((tmp_path / "label-embeddings").glob("*.npy"))) == 1

    def no_encoding(texts, batch_size=64):
        raise AssertionError(f"encoded again: {texts}")

    monkeypatch.setattr(encoder, "encode", no_encoding)
    np.testing.assert_array_equal(text_encoder.label_embeddings(labels, encoder), first)


def test_choose_classes_exact_words_then_meaning(encoder):
    classes = ["playing cricket", "golf putting", "kicking soccer ball", "chopping wood"]
    exact = class_match.choose_classes('"Golf putting"', classes)
    assert (exact.labels, exact.how) == (("golf putting",), "exact")
    with pytest.raises(class_match.UnknownClass, match="no class named 'golf'"):
        class_match.choose_classes('"golf"', classes)
    play = class_match.choose_classes("play", classes)  # a stem, not a prefix
    assert (play.labels, play.how) == (("playing cricket",), "words")
    kicks = class_match.choose_classes("kicks", classes)
    assert kicks.labels == ("kicking soccer ball",)
    meant = class_match.choose_classes("someone booting a football", classes)
    assert (meant.labels, meant.how) == (("kicking soccer ball",), "meaning")
    assert meant.similarities[0] > class_match.MIN_SIMILARITY
    assert class_match.choose_classes("zebra", classes).labels == ()


def test_labels_command_json_and_table():
    done = run_cli("labels", "someone kicking a ball", "--limit", "3", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [set(r) for r in rows] == [{"label", "similarity"}] * 3
    assert rows[0]["label"] == "kicking soccer ball"
    assert rows[0]["similarity"] >= rows[1]["similarity"] >= rows[2]["similarity"]
    table = run_cli("labels", "kids doing cartwheels")
    assert table.returncode == 0 and table.stdout.splitlines()[1].startswith("cartwheeling")
    bad = run_cli("labels", "x", "--limit", "0")
    assert bad.returncode == 2 and "--limit must be at least 1" in bad.stderr
