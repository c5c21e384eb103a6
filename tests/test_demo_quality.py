"""The demo's quality figures: the retrieval set is found or the reason it is not is given, and
loading keeps every judged document whatever ``--points`` says (so every question can be
answered), in a tiny BEIR set written here."""

from __future__ import annotations

import json
from pathlib import Path

from switchyard.backfill import demo_quality as q


def _write_set(root: Path) -> Path:
    root.mkdir()
    docs = [{"_id": f"d{i}", "title": "" if i % 2 else f"T{i}", "text": "x" * 1500} for i in range(6)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "why?"}) + "\n"
                                        + json.dumps({"_id": "q2", "text": "unjudged"}) + "\n")
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td5\t1\nq1\td3\t2\n")
    return root


def test_missing_set_gives_the_reason(tmp_path: Path) -> None:
    path, why = q.find_dataset(str(tmp_path / "nope"))
    assert path is None and "corpus.jsonl" in why and "left out" in why


def test_load_puts_judged_documents_first_and_keeps_them(tmp_path: Path) -> None:
    path, why = q.find_dataset(str(_write_set(tmp_path / "set")))
    assert path is not None and why == ""
    judged = q.load(path, limit=1)
    assert [d[0] for d in judged.docs] == ["d3", "d5"]  # both judged kept although limit is 1
    assert judged.queries == {"q1": "why?"}  # a question without judgements is not asked
    assert judged.qrels == {"q1": {"d5": 1.0, "d3": 2.0}}
    assert judged.docs[0][1] == "d3"  # no title: the id names it
    assert len(judged.docs[0][2]) == 1000
    more = q.load(path, limit=4)
    assert [d[0] for d in more.docs] == ["d3", "d5", "d0", "d1"]


def test_figures_lines_say_what_was_not_measured() -> None:
    lines = q.Figures(before=0.5, midway=0.61, midway_source=0.5, midway_share=0.5).lines("a", "b")
    assert "0.500" in lines[0] and "at 50% backfilled" in lines[1] and "0.610" in lines[1]
    assert "not measured" in lines[2]
