"""Caption metrics through pycocoevalcap: hand-computable BLEU-1 and ROUGE-L, and the Java parts."""

from __future__ import annotations

import pytest

from mcit.evaluation.scorers import SCORERS
from mcit.evaluation.scorers.captions import CaptionScorer, java_available, python_tokenize


def test_python_tokenizer_drops_punctuation_like_the_ptb_wrapper():
    assert python_tokenize("A man, riding a horse... on the beach!") == "a man riding a horse on the beach"
    assert python_tokenize("It's black-and-white.") == "it's black and white"


def test_without_java_bleu_and_rouge_match_hand_computation():
    # 3 of 4 words right, same length: BLEU-1 = 3/4 (no brevity penalty); LCS 3 of 4 both
    # ways: ROUGE-L = 3/4. BLEU-2 = sqrt(3/4 * 2/3).
    result = CaptionScorer(use_java=False).score(["a b c d", "x y z w"], [["a b c e"], ["x y z w", "q"]])
    assert result.parts["BLEU-1"] == pytest.approx(7 / 8, abs=1e-6)
    assert "METEOR" not in result.parts
    assert result.notes == ("no Java: Python tokenizer instead of PTB, METEOR not computed",)
    assert set(result.parts) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}
    assert result.score == pytest.approx(sum(result.parts.values()) / 6)
    single = CaptionScorer(use_java=False).score(["a b c d"], [["a b c e"]])
    assert single.parts["BLEU-1"] == pytest.approx(0.75, abs=1e-6)
    assert single.parts["BLEU-2"] == pytest.approx((0.75 * 2 / 3) ** 0.5, abs=1e-6)
    assert single.parts["ROUGE-L"] == pytest.approx(0.75, abs=1e-6)
    assert len(result.per_sample) == 2 and result.per_sample[1] > result.per_sample[0]


def test_cider_rewards_the_consensus_caption():
    references = [["a dog runs on grass", "a dog running on the grass"], ["a cat sleeps on a sofa", "a cat asleep on the sofa"], ["a red car on a street"]]
    good = CaptionScorer(use_java=False).score(["a dog runs on the grass", "a cat sleeps on the sofa", "a red car on a street"], references)
    bad = CaptionScorer(use_java=False).score(["a red car on a street", "a dog runs on the grass", "a cat sleeps on the sofa"], references)
    assert good.parts["CIDEr"] > 1.0 > bad.parts["CIDEr"]
    assert good.score > bad.score


@pytest.mark.skipif(not java_available(), reason="the PTB tokenizer and METEOR need Java")
def test_with_java_the_coco_tokenizer_and_meteor_run():
    result = SCORERS.get("caption").score(["A man, riding a horse.", "two dogs"], [["a man riding a horse"], ["a cat on a mat"]])
    assert result.notes == ("PTB tokenizer (Java)", "METEOR 1.5 (Java)")
    assert set(result.parts) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
    assert 0.0 < result.parts["METEOR"] < 1.0
    assert result.per_sample[0] > result.per_sample[1]
    assert result.score == pytest.approx(sum(result.parts.values()) / 7)


def test_caption_scorer_refuses_samples_without_references():
    with pytest.raises(ValueError, match="at least one reference"):
        CaptionScorer(use_java=False).score(["a"], [[]])
