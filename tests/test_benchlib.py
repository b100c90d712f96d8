"""The benchmarks' shared helpers: their figures and docs/benchmarks.md depend on them."""

from bench.benchlib import nearest_rank, percentile, update_doc

DOC = "# Benchmarks\n\nIntro.\n\n## A (bench/a.py)\n\nold A\n\n## B (bench/b.py)\n\nB stays\n"


def test_update_doc_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    update_doc(path, "## A (bench/a.py)", "## A (bench/a.py)\n\nnew A\n")
    assert path.read_text() == "# Benchmarks\n\nIntro.\n\n## A (bench/a.py)\n\nnew A\n\n## B (bench/b.py)\n\nB stays\n"


def test_update_doc_appends_a_section_it_does_not_find(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    update_doc(path, "## C (bench/c.py)", "## C (bench/c.py)\n\nC\n")
    assert path.read_text() == DOC + "\n## C (bench/c.py)\n\nC\n"


def test_update_doc_starts_a_missing_file(tmp_path):
    path = tmp_path / "docs" / "benchmarks.md"
    update_doc(path, "## A (bench/a.py)", "## A (bench/a.py)\n\nA\n")
    assert path.read_text().startswith("# Benchmarks\n") and path.read_text().endswith("## A (bench/a.py)\n\nA\n")


def test_percentile_interpolates_and_nearest_rank_picks_a_measured_value():
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 0.5) == 25.0 and percentile(values, 0.0) == 10.0 and percentile(values, 1.0) == 40.0
    assert nearest_rank(values, 50) == 20.0 and nearest_rank(values, 99) == 40.0 and nearest_rank([], 50) is None
