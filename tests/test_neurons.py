"""The fused LIF (spikebert.neurons) against snnTorch, the reference, spike for spike and gradient for gradient."""

import pytest
import snntorch as snn
import torch
from snntorch import surrogate

from spikebert.neurons import LIF, ATanHeaviside, HeavisideEncoder, atan_surrogate_grad, lif_coefficients, lif_scan

ALPHA = 2.0


def snntorch_lif(x: torch.Tensor, *, tau: float, threshold: float, alpha: float = ALPHA) -> torch.Tensor:
    """snnTorch Leaky (reset to zero) driven with gain * x, as the student used it before the fused rewrite.

    beta and threshold are given in x's dtype: snnTorch would otherwise store them as float32 tensors,
    and in float64 its beta = 1 - 1/tau would be float32-rounded (the NIR reference uses float64).
    """
    beta, gain = lif_coefficients(tau)
    neuron = snn.Leaky(beta=torch.tensor(beta, dtype=x.dtype), threshold=torch.tensor(threshold, dtype=x.dtype),
                       spike_grad=surrogate.atan(alpha=alpha), reset_mechanism="zero")
    mem = torch.zeros_like(x[0])
    spikes = []
    for x_t in x:
        spk, mem = neuron(x_t * gain, mem)
        spikes.append(spk)
    return torch.stack(spikes)


def spikes_and_input_grad(fn, x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    spikes = fn(x)
    (grad,) = torch.autograd.grad((weights * spikes.to(weights.dtype)).sum(), x)
    return spikes.detach(), grad


def random_case(seed: int, dtype: torch.dtype, shape=None, *, scale: float = 1.0):
    """Inputs around the firing range (gain * x ~ N(0.5, 1) for scale = tau / 2) and loss weights.

    Weights are float32 values because snnTorch's surrogate returns float32 spikes, which rounds
    their incoming gradient to float32."""
    g = torch.Generator().manual_seed(seed)
    if shape is None:  # random (T, B, L, D)
        shape = tuple(int(n) for n in torch.randint(1, 7, (4,), generator=g))
    x = ((torch.randn(shape, generator=g) * 2.0 + 1.0) * scale).to(dtype)
    weights = torch.randn(shape, generator=g).to(dtype)
    return x, weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [2.0, 10.0])
@pytest.mark.parametrize("threshold", [1.0, 0.5, 0.3, 1.7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_lif_equals_snntorch_spikes_and_gradients(dtype, tau, threshold, seed):
    x, w = random_case(seed, dtype, shape=(5, 3, 4, 17) if seed == 0 else None, scale=tau / 2)
    lif = LIF(tau=tau, threshold=threshold, surrogate_alpha=ALPHA)
    ours, grad = spikes_and_input_grad(lif, x, w)
    ref, ref_grad = spikes_and_input_grad(lambda v: snntorch_lif(v, tau=tau, threshold=threshold), x, w)
    assert ours.dtype == dtype and grad.dtype == dtype
    assert 0 < ours.sum() < ours.numel(), "the case must exercise both firing and resets"
    assert torch.equal(ours, ref.to(dtype))
    assert torch.equal(grad, ref_grad)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_backward_equals_autograd_through_the_step(dtype):
    """The hand-written BPTT equals autograd through the same loop with a surrogate spike."""
    x, w = random_case(3, dtype, shape=(6, 2, 5, 9))
    beta, gain = lif_coefficients(3.0)

    def reference(v):
        return lif_scan(v, beta=beta, gain=gain, threshold=0.8, spike=lambda u: ATanHeaviside.apply(u, ALPHA))[0]

    ours, grad = spikes_and_input_grad(LIF(tau=3.0, threshold=0.8, surrogate_alpha=ALPHA), x, w)
    ref, ref_grad = spikes_and_input_grad(reference, x, w)
    assert torch.equal(ours, ref) and torch.equal(grad, ref_grad)


def test_impulse_response_and_reset():
    # tau = 4: beta = 0.75, gain = 0.25. One impulse of 8 at t = 0, then silence, threshold 1.5:
    # U = 2 (spike), reset, then 0, 0; a second impulse of 4 at t = 3 gives U = 1: no spike, decays to 0.75.
    lif = LIF(tau=4.0, threshold=1.5, surrogate_alpha=ALPHA)
    x = torch.tensor([8.0, 0.0, 0.0, 4.0, 0.0], dtype=torch.float64)[:, None]
    assert lif(x).squeeze(1).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    _, u = lif_scan(x, beta=0.75, gain=0.25, threshold=1.5)
    assert u.squeeze(1).tolist() == [2.0, 0.0, 0.0, 1.0, 0.75]


def test_surrogate_gradient_value():
    # eq. N4 at x = 0 is alpha / 2; at x = 1/alpha it is alpha / (2 (1 + pi^2 / 4)).
    x = torch.tensor([0.0, 0.5], dtype=torch.float64)
    expected = torch.tensor([1.0, 1.0 / (1 + torch.pi ** 2 / 4)], dtype=torch.float64)
    torch.testing.assert_close(atan_surrogate_grad(x, 2.0), expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_heaviside_encoder_equals_snntorch_atan(dtype):
    x, w = random_case(4, dtype, shape=(3, 7, 11))
    ours, grad = spikes_and_input_grad(HeavisideEncoder(surrogate_alpha=ALPHA), x, w)
    ref, ref_grad = spikes_and_input_grad(surrogate.atan(alpha=ALPHA), x, w)
    assert ours.dtype == dtype and torch.equal(ours, ref.to(dtype)) and torch.equal(grad, ref_grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_integrates_in_float32(dtype):
    """Half inputs (autocast) give the float32 result: float32 membranes, spikes and grads in x's dtype."""
    x, w = random_case(5, torch.float32, shape=(4, 3, 8, 16))
    x, w = x.to(dtype), w.to(dtype)
    lif = LIF(tau=2.0, threshold=1.0, surrogate_alpha=ALPHA)
    ours, grad = spikes_and_input_grad(lif, x, w)
    ref, ref_grad = spikes_and_input_grad(lif, x.float(), w.float())
    assert ours.dtype == dtype and grad.dtype == dtype
    assert torch.equal(ours, ref.to(dtype)) and torch.equal(grad, ref_grad.to(dtype))


def test_lif_under_cpu_autocast_in_the_student(tiny_cfg):
    from spikebert.model import SpikeBERT
    from spikebert.testing import make_ids

    model = SpikeBERT(tiny_cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_ids(2, 8, tiny_cfg.vocab_size))
    out.logits.float().sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_lif_on_cuda_equals_cpu(dtype):
    x, w = random_case(6, torch.float32, shape=(4, 2, 8, 32))
    lif = LIF(tau=2.0, threshold=1.0, surrogate_alpha=ALPHA)
    cpu, cpu_grad = spikes_and_input_grad(lif, x.to(dtype), w.to(dtype))
    gpu, gpu_grad = spikes_and_input_grad(lif, x.to(dtype).cuda(), w.to(dtype).cuda())
    assert gpu.is_cuda and gpu.dtype == dtype
    assert torch.equal(gpu.cpu(), cpu)
    torch.testing.assert_close(gpu_grad.cpu(), cpu_grad)


def test_checkpoints_with_snntorch_buffers_still_load(tiny_cfg):
    from spikebert.model import SpikeBERT

    model = SpikeBERT(tiny_cfg)
    state = model.state_dict()
    legacy = dict(state)
    for name, module in model.named_modules():
        if isinstance(module, LIF):
            legacy |= {f"{name}.neuron.beta": torch.tensor(module.beta), f"{name}.neuron.threshold":
                       torch.tensor(module.threshold), f"{name}.neuron.graded_spikes_factor": torch.tensor(1.0),
                       f"{name}.neuron.reset_mechanism_val": torch.tensor(1)}
    SpikeBERT(tiny_cfg).load_state_dict(legacy, strict=True)
    legacy["blocks.0.mlp.lif1.neuron.threshold"] = torch.tensor(0.25)
    with pytest.raises(ValueError, match="disagrees with the config"):
        SpikeBERT(tiny_cfg).load_state_dict(legacy, strict=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [2.0, 10.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_student_neurons_are_snntorch_and_the_fused_path_is_exact(dtype, tau, seed):
    """The LIF module holds an snnTorch ``Leaky``; its fused fast path gives the same spikes and
    gradients as running that snnTorch module's own loop (``fused=False``)."""
    import snntorch as snn

    x, w = random_case(seed, dtype, shape=(5, 3, 4, 9), scale=tau / 2)
    fast = LIF(tau=tau, threshold=0.7, surrogate_alpha=ALPHA)
    slow = LIF(tau=tau, threshold=0.7, surrogate_alpha=ALPHA, fused=False)
    assert type(fast.neuron) is snn.Leaky and fast.neuron.reset_mechanism == "zero"
    assert fast.uses_fast_path and not slow.uses_fast_path
    spikes, grad = spikes_and_input_grad(fast, x, w)
    ref, ref_grad = spikes_and_input_grad(slow, x, w)
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(spikes, ref) and torch.equal(grad, ref_grad)


@pytest.mark.parametrize("neuron", ["leaky-subtract", "synaptic"])
def test_other_snntorch_neurons_train_and_refuse_nir(tiny_cfg, neuron):
    import dataclasses

    import snntorch as snn

    from spikebert.contract.errors import UnsupportedError
    from spikebert.converters.torch_to_nir import export_student
    from spikebert.model import SpikeBERT

    model = SpikeBERT(dataclasses.replace(tiny_cfg, neuron=neuron))
    lif = model.blocks[0].mlp.lif1
    assert isinstance(lif.neuron, snn.Synaptic if neuron == "synaptic" else snn.Leaky) and not lif.uses_fast_path
    ids = torch.randint(1, tiny_cfg.vocab_size, (2, tiny_cfg.max_len))
    out = model(ids)
    out.logits.sum().backward()
    assert model.blocks[0].mlp.fc1.weight.grad is not None
    with pytest.raises(UnsupportedError, match=f"snnTorch neuron '{neuron}'.*no exact NIR form"):
        export_student(model.eval())


def test_subtract_reset_differs_from_zero_reset():
    x = torch.full((4, 1), 3.0)  # gain 0.5: v = 1.5 at step 1, fires; zero reset -> 1.5 again, subtract -> 2.0
    zero = LIF(tau=2.0, threshold=1.0, surrogate_alpha=2.0)(x)
    sub = LIF(tau=2.0, threshold=1.0, surrogate_alpha=2.0, neuron="leaky-subtract")(x)
    assert zero.flatten().tolist() == [1.0, 1.0, 1.0, 1.0]
    assert sub.shape == zero.shape and sub.sum() >= 1
