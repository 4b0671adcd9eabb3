"""The teacher counted from its ONNX graph equals the analytic BERT count."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spikebert.energy.counting import teacher_counts
from spikebert.energy.onnx_count import count_products, onnx_teacher_counts, product_macs


def test_product_macs():
    assert product_macs("MatMul", (1, 7, 32), (32, 64)) == 7 * 32 * 64
    assert product_macs("MatMul", (2, 3, 7, 16), (1, 3, 16, 7)) == 2 * 3 * 7 * 16 * 7  # broadcast batch dims
    assert product_macs("MatMul", (16,), (16, 4)) == 16 * 4  # 1-D operand promoted
    assert product_macs("Gemm", (1, 32), (2, 32), trans_b=True) == 32 * 2
    with pytest.raises(ValueError, match="inner dimension"):
        product_macs("MatMul", (1, 7, 32), (16, 4))


def test_onnx_count_equals_analytic(tmp_path, tiny_teacher):
    from spikebert.converters.onnx_export import export_teacher_onnx

    path = tmp_path / "teacher.onnx"
    export_teacher_onnx(tiny_teacher, path, max_len=12)
    lengths = [3, 7, 7, 12]
    config = json.loads((Path(tiny_teacher) / "config.json").read_text())
    onnx_count, analytic = onnx_teacher_counts(path, lengths), teacher_counts(config, lengths)
    # every matrix product is in both: 2 layers x (Q, K, V, O, Q K^T, A V, FFN in, FFN out) + pooler + classifier
    assert (onnx_count.macs, onnx_count.weight_reads) == (analytic.macs, analytic.weight_reads)
    assert onnx_count.method == "onnx (teacher.onnx)"

    rows = count_products(path, 5)  # d = 32, 2 heads of 16, d_ff = 64, 2 classes
    assert len(rows) == 2 * 8 + 2
    qk = [r for r in rows if r.a_shape == (1, 2, 5, 16)]
    assert len(qk) == 2 and all(r.macs == 5 * 5 * 32 and r.weight_reads == 5 * 32 for r in qk)
    assert (rows[-1].op_type, rows[-1].macs, rows[-1].weight_reads) == ("Gemm", 32 * 2, 32 * 2)  # classifier
    with pytest.raises(ValueError, match="at least one"):
        onnx_teacher_counts(path, [])


def test_energy_modules_do_not_import_torch():
    code = ("import sys, spikebert.energy.onnx_count, spikebert.energy.plots, spikebert.energy.profiles; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('spikebert.model', 'transformers'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
