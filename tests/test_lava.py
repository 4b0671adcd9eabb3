import numpy as np
import pytest

from converters.torch_to_nir import export_student
from hardware.lava_runner import run_lava
from hardware.reference import ReferenceExecutor
from tests.conftest import make_ids


def test_lava_equals_reference_and_records_same_activity(trained_like_model):
    graph = export_student(trained_like_model)
    ids = make_ids(7, 8, trained_like_model.cfg.vocab_size).numpy()
    ref = ReferenceExecutor(graph)
    expected = ref.run(ids)
    lava = run_lava(graph, ids, batch_size=3, progress=False)  # 3 batches, the last with 2 filler rows
    np.testing.assert_array_equal(lava.step_outputs, expected.step_outputs)
    assert lava.num_steps == 3 * trained_like_model.cfg.time_steps
    assert set(lava.activity.nodes) == set(ref.activity.nodes)
    for name, act in ref.activity.nodes.items():
        got = lava.activity.nodes[name]
        assert (got.input_nonzeros, got.input_elements, got.qk_accumulates, got.av_accumulates) == (
            act.input_nonzeros, act.input_elements, act.qk_accumulates, act.av_accumulates), name
        assert got.input_abs_sum == pytest.approx(act.input_abs_sum, rel=1e-12), name  # float summation order
    assert ref.activity.nodes["b1_attn"].qk_accumulates > 0


def test_lava_rejects_unsupported_graph(trained_like_model):
    graph = export_student(trained_like_model)
    graph.nodes["b0_res1"].scale = np.full_like(graph.nodes["b0_res1"].scale, 2.0)
    ids = make_ids(2, 8, trained_like_model.cfg.vocab_size).numpy()
    with pytest.raises(ValueError, match="only unit scales"):
        run_lava(graph, ids, progress=False)
