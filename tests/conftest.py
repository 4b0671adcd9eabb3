import os
import random

import pytest
import torch

from spikebert.hardware.lava_runner import prepare_lava
from spikebert.testing import make_ids, scale_up_linears

prepare_lava()  # Lava must fix the multiprocessing start method before tqdm or torch use it

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


@pytest.fixture
def tiny_cfg():
    from spikebert.config import StudentConfig

    return StudentConfig(vocab_size=60, dim=16, depth=2, heads=2, max_len=8, num_classes=3)


def assert_file_graph_equals_pytorch(model, path, *, sentences: int = 6, length: int = 8):
    """Export ``model`` to the NIR file ``path``, read it back, and check the reference executor against PyTorch
    on random ids: logits to 1e-12 and every layer's spike counts. Returns (graph, ids, logits, activity)."""
    import numpy as np

    from spikebert.contract.nirfile import read_graph, write_graph
    from spikebert.converters.torch_to_nir import export_student
    from spikebert.hardware.reference import ReferenceExecutor
    from spikebert.recording import record_batches

    write_graph(path, export_student(model))
    graph = read_graph(path)
    ids = make_ids(sentences, length, model.cfg.vocab_size)
    ex = ReferenceExecutor(graph)
    ref_logits = ex.run_batches(ids.numpy(), batch_size=4)
    torch_logits, torch_activity = record_batches(model, ids, batch_size=4, graph=graph)
    np.testing.assert_allclose(ref_logits, torch_logits.numpy(), rtol=0, atol=1e-12)
    assert ex.activity.same_counts(torch_activity)
    return graph, ids, ref_logits, ex.activity


def assert_lava_equals_reference(graph, ids, *, fuse: str, batch_size: int = 2, record: tuple[str, ...] = (),
                                 activity: bool = True):
    """Run ``graph`` on token ids in Lava (``fuse``) and on the reference executor: the step outputs bit for bit
    and (``activity``) the activity counts equal. Returns (Lava run, reference run with ``record``)."""
    import numpy as np

    from spikebert.hardware.lava_runner import run_lava
    from spikebert.hardware.reference import ReferenceExecutor

    ref = ReferenceExecutor(graph)
    expected = ref.run(ids, record=record)
    lava = run_lava(graph, ids, batch_size=batch_size, fuse=fuse, progress=False)
    np.testing.assert_array_equal(lava.step_outputs, expected.step_outputs)
    assert not activity or lava.activity.same_counts(ref.activity)
    return lava, expected


@pytest.fixture
def one_thread():
    """Tiny tensors: on a busy machine a second intra-op thread costs ~10 ms per op, the work ~10 us."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trained_like_model(tiny_cfg):
    """A tiny float64 student whose neurons fire (random weights scaled up so every layer is active)."""
    from spikebert.model import SpikeBERT

    torch.manual_seed(0)
    model = SpikeBERT(tiny_cfg).double().eval()
    with torch.no_grad():
        scale_up_linears(model)
    return model


@pytest.fixture
def tiny_teacher(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from spikebert.teacher import load_tokenizer

    tok = load_tokenizer("minilm-offline")
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2)
    path = tmp_path / "tiny-bert"
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture
def tiny_task(tmp_path):
    rng = random.Random(0)
    good, bad = ["great", "fine", "lovely", "superb"], ["awful", "dull", "boring", "bad"]
    folder = tmp_path / "data" / "toy"
    folder.mkdir(parents=True)
    for split, n in (("train", 96), ("dev", 24)):
        rows = []
        for _ in range(n):
            label = rng.randint(0, 1)
            rows.append(f"a {rng.choice(good if label else bad)} film\t{label}")
        (folder / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return tmp_path / "data"
