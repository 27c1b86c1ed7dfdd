"""The printing-time table of derive bench's derivation output (derive/bench/printing.py)."""

from derive.bench import printing


def test_one_row_per_depth_with_every_printer_timed():
    rows = printing.printing_table(depths=(2, 6), repeats=1)
    assert [r["L"] for r in rows] == [2, 6]
    for row in rows:
        assert all(row[name] > 0 for name in (*printing.PRINTERS, "named"))
    # the tree outgrows the DAG: sigmoid(Z_k) is written out again in every derivative below it
    assert rows[1]["tree"] / rows[1]["dag"] > rows[0]["tree"] / rows[0]["dag"] > 1
    table = printing.report(rows)
    assert table.count("\n") == 3 and "| 6 |" in table
