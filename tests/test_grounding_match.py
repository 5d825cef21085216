"""grounding.match: IoU, one-to-one greedy matching, precision and recall (table-driven)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grounding.match import iou, match, same_label

A = (0, 0, 10, 10)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (A, A, 1.0),  # identical boxes
        (A, (5, 0, 15, 10), 50 / 150),  # half overlapping: 50 shared of 150 covered
        (A, (10, 0, 20, 10), 0.0),  # touching edges share no area
        (A, (20, 20, 30, 30), 0.0),  # apart
        (A, (2, 2, 4, 4), 4 / 100),  # one inside the other: the small one's area over the big one's
        ((0, 0, 0, 10), (0, 0, 0, 10), 0.0),  # no area at all: no overlap, not a division by zero
        ((0.5, 0.5, 1.5, 1.5), (1, 1, 2, 2), 0.25 / 1.75),  # fractional pixels
    ],
)
def test_iou(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)  # symmetric


@pytest.mark.parametrize(
    "predictions, references, threshold, labels, pairs, extra, missed",
    [
        # one prediction on its reference: matched
        ([(A, "cat")], [(A, "cat")], 0.5, True, [(0, 0, 1.0)], [], []),
        # nothing predicted: every reference missed
        ([], [(A, "cat")], 0.5, True, [], [], [0]),
        # no references: every prediction extra
        ([(A, "cat")], [], 0.5, True, [], [0], []),
        # IoU 1/3 under the 0.5 threshold: one extra and one missed
        ([(A, "cat")], [((5, 0, 15, 10), "cat")], 0.5, True, [], [0], [0]),
        # the same pair at a threshold of 0.3 matches
        ([(A, "cat")], [((5, 0, 15, 10), "cat")], 0.3, True, [(0, 0, 1 / 3)], [], []),
        # exactly at the threshold counts (IoU >= threshold)
        ([(A, "cat")], [((0, 0, 10, 20), "cat")], 0.5, True, [(0, 0, 0.5)], [], []),
        # labels differ: no match when labels must match...
        ([(A, "cat")], [(A, "dog")], 0.5, True, [], [0], [0]),
        # ...and a match when they need not
        ([(A, "cat")], [(A, "dog")], 0.5, False, [(0, 0, 1.0)], [], []),
        # case and whitespace do not make labels differ
        ([(A, " Coffee   CUP ")], [(A, "coffee cup")], 0.5, True, [(0, 0, 1.0)], [], []),
        # two predictions on one reference: one-to-one, the better one wins, the other is extra
        ([((1, 0, 11, 10), "cat"), (A, "cat")], [(A, "cat")], 0.5, True, [(1, 0, 1.0)], [0], []),
        # greedy by IoU, not in the predictions' order: the best pair of all (prediction 1 on
        # reference 0, IoU 0.94) is taken first, although prediction 0 likes reference 0 too (0.85);
        # prediction 0 gets reference 1 (0.6). Visiting prediction 0 first would pair it with reference 0.
        (
            [((0, 0, 10, 10), "x"), ((0, 0, 10, 8), "x")],
            [((0, 0, 10, 8.5), "x"), ((0, 0, 10, 6), "x")],
            0.5,
            True,
            [(0, 1, 0.6), (1, 0, 80 / 85)],
            [],
            [],
        ),
        # equal IoUs: the earlier prediction, then the earlier reference, takes it
        ([(A, "x"), (A, "x")], [(A, "x"), (A, "x")], 0.5, True, [(0, 0, 1.0), (1, 1, 1.0)], [], []),
        # within the same label only: the cat box lies on the dog reference, the dog box on the cat one
        (
            [(A, "cat"), ((20, 0, 30, 10), "dog")],
            [((20, 0, 30, 10), "cat"), (A, "dog")],
            0.5,
            True,
            [],
            [0, 1],
            [0, 1],
        ),
    ],
)
def test_matching(predictions, references, threshold, labels, pairs, extra, missed):
    result = match(predictions, references, threshold, labels)
    assert [(m.prediction, m.reference, pytest.approx(m.iou)) for m in result.matches] == pairs
    assert list(result.extra) == extra and list(result.missed) == missed


@pytest.mark.parametrize(
    "predicted, found, references, precision, recall",
    [
        (4, 3, 5, 0.75, 0.6),  # 3 of 4 predictions right, 3 of 5 references found
        (0, 0, 2, None, 0.0),  # nothing predicted: precision undefined, recall 0
        (2, 0, 0, 0.0, None),  # nothing to find: recall undefined, precision 0
    ],
)
def test_precision_and_recall(predicted, found, references, precision, recall):
    hits = [((10 * i, 0, 10 * i + 5, 5), "x") for i in range(found)]
    predictions = hits + [((500 + 10 * i, 500, 505 + 10 * i, 505), "x") for i in range(predicted - found)]
    refs = hits + [((900 + 10 * i, 900, 905 + 10 * i, 905), "x") for i in range(references - found)]
    result = match(predictions, refs)
    assert result.precision == precision and result.recall == recall
    assert result.mean_iou == (1.0 if found else None)


@pytest.mark.parametrize(
    "call",
    [
        lambda: match([(A, "x")], [(A, "x")], threshold=0),  # a threshold of 0 would match boxes that do not touch
        lambda: match([(A, "x")], [(A, "x")], threshold=1.5),  # above 1 nothing could ever match
        lambda: match([((0, 0, float("nan"), 1), "x")], []),  # not finite
        lambda: match([], [((5, 5, 1, 1), "x")]),  # inverted corners
        lambda: match([((0, 0, 1), "x")], []),  # three numbers
        lambda: iou(A, (0, 0, math.inf, 1)),  # infinite
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_same_label():
    assert same_label("Red  car", "red car") and not same_label("red car", "red cars")


boxes = st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 30), st.integers(1, 30)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])
)
labelled = st.lists(st.tuples(boxes, st.sampled_from(["a", "b"])), max_size=6)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(predictions=labelled, references=labelled, threshold=st.sampled_from([0.1, 0.5, 0.9]), labels=st.booleans())
def test_matching_is_one_to_one_and_accounts_for_every_box(predictions, references, threshold, labels):
    result = match(predictions, references, threshold, labels)
    matched_p = [m.prediction for m in result.matches]
    matched_r = [m.reference for m in result.matches]
    assert len(set(matched_p)) == len(matched_p) and len(set(matched_r)) == len(matched_r)
    assert sorted(matched_p + list(result.extra)) == list(range(len(predictions)))
    assert sorted(matched_r + list(result.missed)) == list(range(len(references)))
    for m in result.matches:
        assert m.iou >= threshold and m.iou == iou(predictions[m.prediction][0], references[m.reference][0])
        assert not labels or same_label(predictions[m.prediction][1], references[m.reference][1])
