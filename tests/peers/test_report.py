"""docs/peers.md's cross-check table is rendered from the record a tests/peers run wrote
(dfjax.peers.report); no torch needed."""

import json

import pytest

from dfjax.peers.report import BEGIN, END, ReportError, main, update_document

RECORD = {
    "clean": 0.684, "n_eval": 256, "square_iterations": 100,
    "rows": [{"attack": "pgd", "delta": 0.5, "tolerance": 0.06, "dfjax": 0.328,
              "torchattacks": 0.320, "dfjax_s": 3.1, "torchattacks_s": 11.5},
             {"attack": "square", "delta": 4, "tolerance": 0.12, "dfjax": 0.648,
              "torchattacks": 0.609, "dfjax_s": 20.0, "torchattacks_s": 30.0}],
    "meta": {"date": "2026-12-02", "revision": "abc1234", "machine": "2 x Zen3",
             "torch": "2.13.0", "torchattacks": "3.5.1", "load": 1.25},
}


@pytest.fixture()
def report_dir(tmp_path):
    (tmp_path / "crosscheck.json").write_text(json.dumps(RECORD))
    return tmp_path


def test_the_marked_section_is_replaced_and_the_rest_kept(report_dir, tmp_path):
    doc = tmp_path / "peers.md"
    doc.write_text(f"# head\n\n{BEGIN}\nold table\n{END}\n\ntail text\n")
    assert main([str(report_dir), str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# head\n\n") and text.endswith("\n\ntail text\n")
    assert "old table" not in text
    assert "| PGD-10 | 0.5/255 | 0.328 | 0.320 | 0.008 | 0.06 | 3.1 | 11.5 |" in text
    assert "| Square, 100 iterations | 4/255 | 0.648 | 0.609 | 0.039 |" in text
    assert "dfjax abc1234, torch 2.13.0, torchattacks 3.5.1" in text
    update_document(report_dir / "crosscheck.json", doc)  # idempotent
    assert doc.read_text() == text


def test_a_document_without_markers_is_refused_untouched(report_dir, tmp_path):
    doc = tmp_path / "peers.md"
    doc.write_text("no markers\n")
    with pytest.raises(ReportError, match="peers.md: needs one"):
        update_document(report_dir / "crosscheck.json", doc)
    assert doc.read_text() == "no markers\n"


def test_a_broken_record_names_the_file(tmp_path):
    (tmp_path / "crosscheck.json").write_text("{truncated")
    doc = tmp_path / "peers.md"
    doc.write_text(f"{BEGIN}\n{END}\n")
    with pytest.raises(ReportError, match="crosscheck.json: not a cross-check record"):
        update_document(tmp_path / "crosscheck.json", doc)
    assert main([str(tmp_path), str(doc)]) == 1
