"""`pouw bench chain` runs end to end (quick sizes) and reports every figure."""

import json

from chain.bench import ROWS, format_table, main


def test_bench_quick_reports_every_figure(capsys):
    assert main(["--json", "--quick"]) == 0
    results = json.loads(capsys.readouterr().out)
    for key, _, _ in ROWS:
        assert results[key] > 0
    assert "raw cryptography Ed25519 verify" in format_table(results)
