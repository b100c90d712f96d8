"""The benchmarks' shared harness: their figures and docs/benchmarks.md depend on it."""

from bench.harness import log_issues, percentile, update_doc

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


def test_percentile_is_the_nearest_rank_so_always_a_measured_value():
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 50) == 20.0 and percentile(values, 99) == 40.0 and percentile(values, 0) == 10.0
    assert percentile([], 50) is None


def test_log_issues_counts_a_repeated_warning_once_whatever_its_timestamp(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("2026-12-07 06:00:00,001 WARNING slow\n2026-12-07 06:00:01,002 WARNING slow\nINFO fine\n")
    assert log_issues(log) == ["2× WARNING slow"]


def test_log_issues_reports_a_traceback_by_its_exception_line(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: bad\n')
    assert log_issues(log) == ["1× Traceback: ValueError: bad"]
