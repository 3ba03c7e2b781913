"""Classifier backends: registry, alt-profanity-check, detoxify from a tiny local checkpoint, occlusion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safetext.detect.classifiers import (
    Classifier,
    ClassifierError,
    available_classifiers,
    create_classifier,
    occlusion_spans,
    register_classifier,
)
from safetext.policy import Action, PolicyEngine


class KeywordClassifier:
    """A fake whole-text classifier: toxic when it sees 'blorf'."""

    name = "keyword"

    def score(self, texts: list[str]) -> list[float]:
        return [0.95 if "blorf" in t.lower() else 0.05 for t in texts]


def test_registry_lists_backends_and_rejects_unknown() -> None:
    assert {"profanity-check", "detoxify"} <= set(available_classifiers())
    with pytest.raises(ClassifierError, match="unknown classifier backend 'nope'") as info:
        create_classifier("nope")
    assert all(name in str(info.value) for name in available_classifiers())
    with pytest.raises(ClassifierError, match="bad parameters"):
        create_classifier("profanity-check", colour="red")


def test_backend_errors_are_not_reported_as_bad_parameters() -> None:
    class Broken:
        name = "broken"

        def __init__(self, *, size: int = 1) -> None:
            raise ClassifierError(f"broken backend cannot load size {size}")

        def score(self, texts: list[str]) -> list[float]:
            return [0.0 for _ in texts]

    register_classifier("broken-test")(Broken)
    with pytest.raises(ClassifierError, match="cannot load size 3"):
        create_classifier("broken-test", size=3)


def test_custom_backend_registers_by_name() -> None:
    register_classifier("keyword-test")(KeywordClassifier)
    clf = create_classifier("keyword-test")
    assert isinstance(clf, Classifier)
    assert clf.score(["a blorf", "fine"]) == [0.95, 0.05]


def test_occlusion_finds_the_responsible_word() -> None:
    text = "a sign that says blorf!"
    spans = occlusion_spans(KeywordClassifier(), text, threshold=0.5)
    assert [text[s:e] for s, e, _ in spans] == ["blorf"]
    assert occlusion_spans(KeywordClassifier(), "all fine", threshold=0.5) == []


def test_engine_uses_classifier_spans_for_words_the_lexicon_lacks() -> None:
    engine = PolicyEngine("strict", classifier=KeywordClassifier())
    decision = engine.check('a sign that says "blorf"')
    assert decision.action is Action.REWRITE
    (span,) = decision.spans
    assert (span.method, span.category, span.text) == ("classifier", "toxicity", "blorf")
    assert decision.benign_prompt == 'a sign that says "friend"'
    assert engine.check("a quiet meadow").action is Action.ALLOW


def test_profanity_check_backend_scores() -> None:
    pytest.importorskip("profanity_check")
    clf = create_classifier("profanity-check")
    toxic, clean = clf.score(["you are a fucking idiot", "a bowl of fruit on a table"])
    assert toxic > 0.8 > clean


def test_detoxify_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ClassifierError, match="checkpoint not found"):
        create_classifier("detoxify", checkpoint=tmp_path / "none.ckpt", config_dir=tmp_path)
    (tmp_path / "x.ckpt").write_bytes(b"junk")
    with pytest.raises(ClassifierError, match="config.json"):
        create_classifier("detoxify", checkpoint=tmp_path / "x.ckpt", config_dir=tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ClassifierError, match="cannot read detoxify checkpoint"):
        create_classifier("detoxify", checkpoint=tmp_path / "x.ckpt", config_dir=tmp_path)


def _tiny_detoxify(tmp_path: Path) -> tuple[Path, Path]:
    """A detoxify-format checkpoint for a 2-layer, 32-wide BERT and its local config folder."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("detoxify")
    config_dir = tmp_path / "tiny-bert"
    config_dir.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "sign", "that", "says", "idiot", "hello", "you"]
    (config_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=6,
    )
    config.save_pretrained(config_dir)
    tokenizer = transformers.BertTokenizer(vocab_file=str(config_dir / "vocab.txt"))
    tokenizer.save_pretrained(config_dir)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    classes = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    checkpoint = tmp_path / "tiny.ckpt"
    torch.save(
        {
            "config": {
                "arch": {"args": {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
                                  "tokenizer_name": "BertTokenizer", "num_classes": 6}},
                "dataset": {"args": {"classes": classes}},
            },
            "state_dict": model.state_dict(),
        },
        checkpoint,
    )
    return checkpoint, config_dir


def test_detoxify_loads_a_local_checkpoint_without_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint, config_dir = _tiny_detoxify(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clf = create_classifier("detoxify", checkpoint=checkpoint, config_dir=config_dir)
    scores = clf.score(["a sign that says idiot", "hello"])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    assert set(clf.predict(["hello"])) == {"toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"}
    with pytest.raises(ClassifierError, match="label"):
        create_classifier("detoxify", checkpoint=checkpoint, config_dir=config_dir, label="sarcasm")
    json.dumps(scores)
