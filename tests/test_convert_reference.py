"""genesis_tf.tools.convert_reference: the authors' PyTorch checkpoints as genesis_tf runs.

State dicts are built with the reference's exact key names and shapes (the table of
reference_state_dicts.md, 64×64, encoded below) from random tensors; each ported layer
type is compared with the matching torch.nn layer on equal weights.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

torch = pytest.importorskip("torch", reason="pip install -e '.[torch]' (torch CPU)")

from genesis_tf import cli, runs  # noqa: E402
from genesis_tf.models import config_of  # noqa: E402
from genesis_tf.tools import convert_reference as cr  # noqa: E402
from genesis_tf.training import warm_start as warm_start_lib  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
ATOL = 1e-5

# -- the reference's state dicts at 64×64 (reference_state_dicts.md), in file order ---------

ENCODER = [((64, 3, 5, 5), 64), ((64, 32, 5, 5), 64), ((128, 32, 5, 5), 128),
           ((128, 64, 5, 5), 128), ((128, 64, 5, 5), 128)]
DECODER = [((64, 128, 5, 5), 128), ((64, 64, 5, 5), 64), ((32, 64, 5, 5), 64),
           ((32, 64, 5, 5), 64), ((32, 64, 5, 5), 64)]


def _linear(prefix, out, inp, bias=True):
    return [(f"{prefix}.weight", (out, inp))] + ([(f"{prefix}.bias", (out,))] if bias else [])


def _conv(prefix, weight, bias=None):
    return [(f"{prefix}.weight", weight)] + ([(f"{prefix}.bias", (bias,))] if bias else [])


def _gated(prefix, weight, bias, norm):
    rows = _conv(f"{prefix}.conv", weight, bias)
    if norm:
        for name in ("h_norm", "g_norm"):
            rows += [(f"{prefix}.{name}.{p}", (bias // 2,))
                     for p in ("weight", "bias", "running_mean", "running_var")]
            rows.append((f"{prefix}.{name}.num_batches_tracked", ()))
    return rows


def _mask_vae(prefix, norm, decoder=True, out=1):
    rows = []
    for i, (weight, bias) in enumerate(ENCODER):
        rows += _gated(f"{prefix}.q_z_nn.{i}", weight, bias, norm)
    rows += _gated(f"{prefix}.q_z_nn.5", (512, 64, 16, 16), 512, False)
    rows += _linear(f"{prefix}.q_z_mean", 64, 256) + _linear(f"{prefix}.q_z_var.0", 64, 256)
    if decoder:
        rows += _gated(f"{prefix}.p_x_nn.0", (64, 128, 16, 16), 128, False)
        for i, (weight, bias) in enumerate(DECODER):
            rows += _gated(f"{prefix}.p_x_nn.{i + 1}", weight, bias, norm)
        rows += _conv(f"{prefix}.p_x_mean", (out, 32, 1, 1), out)
    return rows


def _lstm(prefix, hidden, inp):
    return [(f"{prefix}.weight_ih_l0", (4 * hidden, inp)),
            (f"{prefix}.weight_hh_l0", (4 * hidden, hidden)),
            (f"{prefix}.bias_ih_l0", (4 * hidden,)), (f"{prefix}.bias_hh_l0", (4 * hidden,))]


def _broadcast(prefix, inp, filters, out, hidden_1x1=False):
    rows = _conv(f"{prefix}.seq.1", (filters, inp, 3, 3), filters)
    for i in (3, 5, 7):
        rows += _conv(f"{prefix}.seq.{i}", (filters, filters, 3, 3), filters)
    return rows + _conv(f"{prefix}.seq.9", (out if not hidden_1x1 else filters, filters, 1, 1),
                        out if not hidden_1x1 else filters)


def _comp_vae(out):
    rows = []
    for i, (o, inp) in zip((0, 2, 4, 6), ((32, 4), (32, 32), (64, 32), (64, 64)), strict=True):
        rows += _conv(f"comp_vae.encoder_module.module.{i}", (o, inp, 3, 3), o)
    rows += _linear("comp_vae.encoder_module.module.9", 256, 1024)
    rows += _linear("comp_vae.encoder_module.module.11", 32, 256)
    return rows + _broadcast("comp_vae.decoder_module", 18, 32, out)


def _attention_process():
    return (_mask_vae("att_process.core", True) + _lstm("att_process.lstm", 128, 320)
            + _linear("att_process.linear", 128, 128))


def _monet_unet():
    rows = []
    for path, shapes in (("down", [(32, 4), (32, 32), (64, 32), (64, 64), (64, 64)]),
                         ("up", [(64, 128), (64, 128), (32, 128), (32, 64), (32, 64)])):
        for i, (out, inp) in enumerate(shapes):
            prefix = f"att_process.core.{path}.{i}"
            rows += [(f"{prefix}.0.weight", (out, inp, 3, 3)), (f"{prefix}.1.weight", (out,)),
                     (f"{prefix}.1.bias", (out,))]
    rows += (_linear("att_process.core.mlp.1", 128, 1024)
             + _linear("att_process.core.mlp.3", 128, 128)
             + _linear("att_process.core.mlp.5", 1024, 128))
    return rows + _conv("att_process.core.final_conv", (1, 32, 1, 1), 1)


PRIOR = _lstm("prior_lstm", 256, 64) + _linear("prior_linear", 128, 256)
REFERENCE = {
    "genesis": [("std", (1, 1, 1, 1, 7))] + _attention_process() + _comp_vae(3) + PRIOR
    + _linear("prior_mlp.0", 256, 64) + _linear("prior_mlp.2", 256, 256)
    + _linear("prior_mlp.4", 32, 256),
    "genesis_s": [("std", (1, 1, 1, 1, 7))] + _attention_process()
    + _broadcast("decoder", 66, 32, 3) + PRIOR,
    "monet": [("std", (1, 1, 1, 1, 5))] + _monet_unet() + _comp_vae(4),
    "dc_vae": _mask_vae("vae", False, out=3),
    "bd_vae": _mask_vae("vae", False, decoder=False)
    + _broadcast("vae.p_x_nn.1", 66, 64, 64, hidden_1x1=True)
    + _conv("vae.p_x_mean", (3, 64, 1, 1), 3),
}
SLOTS = {"genesis": 7, "genesis_s": 7, "monet": 5}
# The keys whose shapes change at 32×32 (the L×L kernels are 8×8, the component encoder
# flattens 2×2×64), and K in std.
AT_32 = {"att_process.core.q_z_nn.5.conv.weight": (512, 64, 8, 8),
         "att_process.core.p_x_nn.0.conv.weight": (64, 128, 8, 8),
         "comp_vae.encoder_module.module.9.weight": (256, 256),
         "vae.q_z_nn.5.conv.weight": (512, 64, 8, 8),
         "vae.p_x_nn.0.conv.weight": (64, 128, 8, 8)}
ROW_COUNTS = {"genesis": 171, "genesis_s": 153, "monet": 61, "dc_vae": 30, "bd_vae": 28}
BUFFERS = (".running_mean", ".running_var", ".num_batches_tracked")


def reference_state_dict(model, seed=0, std=0.7, shapes=None):
    """Random tensors with the reference's keys (in its order) and shapes, or `shapes`
    {key: shape} for other image sizes and K."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in REFERENCE[model]:
        shape = (shapes or {}).get(key, shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key == "std":
            state[key] = torch.full(shape, std)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return state


def adam_state(state_dict, steps=2, seed=1):
    """The optimiser_state_dict torch.optim.Adam has over the parameters (state-dict order,
    std a buffer) after `steps` steps: its format from a real Adam, random moments."""
    template = torch.nn.Parameter(torch.zeros(1))
    adam = torch.optim.Adam([template], lr=1e-4)
    template.grad = torch.ones(1)
    adam.step()
    saved = adam.state_dict()
    generator = torch.Generator().manual_seed(seed)
    shapes = [value.shape for key, value in state_dict.items()
              if key != "std" and not key.endswith(BUFFERS)]
    step = saved["state"][0]["step"]
    saved["state"] = {i: {"step": torch.full_like(step, steps),
                          "exp_avg": torch.randn(shape, generator=generator) * 1e-3,
                          "exp_avg_sq": torch.rand(shape, generator=generator) * 1e-6}
                      for i, shape in enumerate(shapes)}
    saved["param_groups"][0]["params"] = list(range(len(shapes)))
    return saved


def save_reference(path, model, seed=0, iter_idx=1234, beta=0.37, err_ema=2500.0,
                   optimiser=True, shapes=None):
    state = reference_state_dict(model, seed, shapes=shapes)
    torch.save({"model_state_dict": state,
                "optimiser_state_dict": adam_state(state) if optimiser else {},
                "beta": torch.tensor(beta), "err_ema": torch.tensor(err_ema),
                "iter_idx": iter_idx}, path)
    return state


_MODELS = {}


def built(model):
    """The genesis_tf model of --model=`model` at 64×64 (one per test session; K = 2:
    the weights do not depend on it)."""
    if model not in _MODELS:
        from genesis_tf.models import MODELS

        kwargs = {"num_slots": 2} if model in SLOTS else {}
        _MODELS[model] = MODELS[cr.MODEL_CLASSES[model]](
            image_size=64, **kwargs).build_for_images()
    return _MODELS[model]


def shapes_of(model):
    return {p: tuple(v.shape) for p, v in warm_start_lib.weights_of(built(model)).items()}


# -- the oracle: which reference module fills which genesis_tf layer (written per module,
# independently of the converter's key tables), and the layouts with torch's own ops.

def _conv_kernel(w):
    return w.permute(2, 3, 1, 0)  # conv (out,in,kh,kw) / transposed (in,out,kh,kw) alike


def _oracle(model):
    """{(reference module, genesis_tf layer): kind}."""
    pairs = {}
    if model in ("genesis", "genesis_s", "dc_vae", "bd_vae"):
        torch_prefix, keras = (("att_process.core", "mask_encoder") if model.startswith("gen")
                               else ("vae", "encoder"))
        norm = "gated_norm" if model.startswith("gen") else "gated"
        for i in range(5):
            pairs[(f"{torch_prefix}.q_z_nn.{i}", f"{keras}/gated_conv_{i}")] = norm
        pairs[(f"{torch_prefix}.q_z_nn.5", f"{keras}/head")] = "gated"
        if model != "bd_vae":
            decoder = "mask_decoder" if model.startswith("gen") else "decoder"
            pairs[(f"{torch_prefix}.p_x_nn.0", f"{decoder}/stem")] = "gated"
            for i in range(5):
                pairs[(f"{torch_prefix}.p_x_nn.{i + 1}", f"{decoder}/gated_deconv_{i}")] = norm
            pairs[(f"{torch_prefix}.p_x_mean", f"{decoder}/"
                   + ("to_logits" if model.startswith("gen") else "to_rgb"))] = "conv"
    if model.startswith("gen"):
        pairs.update({("att_process.core.q_z_mean", "first_mean"): "linear",
                      ("att_process.core.q_z_var.0", "first_scale"): "linear",
                      ("att_process.lstm", "lstm"): "lstm",
                      ("att_process.linear", "head"): "linear",
                      ("prior_lstm", "mask_prior/lstm/lstm_cell"): "lstm",
                      ("prior_linear", "mask_prior/head"): "linear"})
    if model in ("genesis", "monet"):
        for i in range(4):
            pairs[(f"comp_vae.encoder_module.module.{2 * i}", f"encoder/conv_{i}")] = "conv"
            pairs[(f"comp_vae.decoder_module.seq.{2 * i + 1}", f"decoder/conv_{i}")] = "conv"
        pairs[("comp_vae.encoder_module.module.9", "encoder/hidden")] = "linear_from_chw"
        pairs[("comp_vae.encoder_module.module.11", "encoder/head")] = "linear"
        pairs[("comp_vae.decoder_module.seq.9", "decoder/out")] = "conv"
    if model == "genesis":
        for i, name in enumerate(("hidden_0", "hidden_1", "head")):
            pairs[(f"prior_mlp.{2 * i}", f"component_prior/{name}")] = "linear"
    if model == "genesis_s":
        for i in range(4):
            pairs[(f"decoder.seq.{2 * i + 1}", f"component_decoder/conv_{i}")] = "conv"
        pairs[("decoder.seq.9", "component_decoder/out")] = "conv"
    if model == "monet":
        for path in ("down", "up"):
            for i in range(5):
                pairs[(f"att_process.core.{path}.{i}", f"attention/{path}_{i}")] = "unet_block"
        pairs[("att_process.core.mlp.1", "attention/mlp_0")] = "linear_from_chw"
        pairs[("att_process.core.mlp.3", "attention/mlp_1")] = "linear"
        pairs[("att_process.core.mlp.5", "attention/mlp_2")] = "linear_to_chw"
        pairs[("att_process.core.final_conv", "attention/final_conv")] = "conv"
    if model in ("dc_vae", "bd_vae"):
        pairs[("vae.q_z_mean", "posterior_mean")] = "linear"
        pairs[("vae.q_z_var.0", "posterior_scale")] = "linear"
    if model == "bd_vae":
        for i in range(4):
            pairs[(f"vae.p_x_nn.1.seq.{2 * i + 1}", f"decoder/conv_{i}")] = "conv"
        pairs[("vae.p_x_nn.1.seq.9", "decoder/hidden_1x1")] = "conv"
        pairs[("vae.p_x_mean", "decoder/out")] = "conv"
    return pairs


def expected_variables(model, state):
    """{genesis_tf variable path: expected array} from the oracle."""
    out = {}
    for (src, dst), kind in _oracle(model).items():
        if kind in ("conv", "linear", "linear_from_chw", "linear_to_chw"):
            w, b = state[f"{src}.weight"], state[f"{src}.bias"]
            if kind == "conv":
                out[f"{dst}/kernel"] = _conv_kernel(w)
            elif kind == "linear":
                out[f"{dst}/kernel"] = w.t()
            elif kind == "linear_from_chw":  # input flattened (c, h, w) -> (h, w, c)
                c = 64
                side = int(round((w.shape[1] // c) ** 0.5))
                out[f"{dst}/kernel"] = (w.reshape(-1, c, side, side).permute(0, 2, 3, 1)
                                        .reshape(w.shape[0], -1).t())
            else:  # output viewed as (c, h, w) -> (h, w, c)
                c = 64
                side = int(round((w.shape[0] // c) ** 0.5))
                out[f"{dst}/kernel"] = (w.t().reshape(-1, c, side, side).permute(0, 2, 3, 1)
                                        .reshape(w.shape[1], -1))
                b = b.reshape(c, side, side).permute(1, 2, 0).reshape(-1)
            out[f"{dst}/bias"] = b
        elif kind in ("gated", "gated_norm"):
            out[f"{dst}/conv/kernel"] = _conv_kernel(state[f"{src}.conv.weight"])
            out[f"{dst}/conv/bias"] = state[f"{src}.conv.bias"]
            if kind == "gated_norm":
                for n in ("h_norm", "g_norm"):
                    for t, k in (("weight", "gamma"), ("bias", "beta"),
                                 ("running_mean", "moving_mean"),
                                 ("running_var", "moving_variance")):
                        out[f"{dst}/{n}/{k}"] = state[f"{src}.{n}.{t}"]
        elif kind == "lstm":
            out[f"{dst}/kernel"] = state[f"{src}.weight_ih_l0"].t()
            out[f"{dst}/recurrent_kernel"] = state[f"{src}.weight_hh_l0"].t()
            out[f"{dst}/bias"] = state[f"{src}.bias_ih_l0"] + state[f"{src}.bias_hh_l0"]
        elif kind == "unet_block":
            out[f"{dst}/conv/kernel"] = _conv_kernel(state[f"{src}.0.weight"])
            out[f"{dst}/norm/gamma"] = state[f"{src}.1.weight"]
            out[f"{dst}/norm/beta"] = state[f"{src}.1.bias"]
    return {k: v.numpy() for k, v in out.items()}


def numpy_state(state):
    return {k: v.numpy() for k, v in state.items()}


# -- the mapping ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", list(REFERENCE))
def test_every_variable_receives_its_reference_tensor(model):
    table = REFERENCE[model]
    assert len(table) == ROW_COUNTS[model] and len(dict(table)) == len(table)
    shapes = shapes_of(model)
    # The converter reads exactly the reference's keys, with the reference's shapes.
    expected = cr.expected_torch_shapes(model, shapes)
    _, ignored = cr.reference_table(model, shapes)
    reference = dict(table)
    assert {k: s for k, s in reference.items() if k not in ignored} == expected
    assert set(reference) - set(expected) <= ignored
    state = reference_state_dict(model, seed=3)
    arrays = cr.convert_state_dict(model, numpy_state(state), shapes)
    oracle = expected_variables(model, state)
    assert set(arrays) == set(shapes) == set(oracle)
    for path, value in arrays.items():
        assert value.shape == shapes[path], path
        np.testing.assert_array_equal(value, oracle[path], err_msg=path)


def test_legacy_grids_and_std_are_ignored_but_other_extras_refused():
    state = numpy_state(reference_state_dict("genesis"))
    shapes = shapes_of("genesis")
    state["comp_vae.decoder_module.seq.0.pixel_coords.g_1"] = np.zeros((1, 1, 72, 72))
    state["comp_vae.decoder_module.seq.0.pixel_coords.g_2"] = np.zeros((1, 1, 72, 72))
    cr.convert_state_dict("genesis", state, shapes)
    state["att_process.core.extra.weight"] = np.zeros(3)
    with pytest.raises(cr.ConversionError, match=r"unexpected key att_process\.core\.extra"):
        cr.convert_state_dict("genesis", state, shapes)


def test_missing_and_mis_shaped_keys_are_named():
    shapes = shapes_of("dc_vae")
    state = numpy_state(reference_state_dict("dc_vae"))
    del state["vae.q_z_var.0.bias"]
    with pytest.raises(cr.ConversionError, match=r"missing key vae\.q_z_var\.0\.bias"):
        cr.convert_state_dict("dc_vae", state, shapes)
    state = numpy_state(reference_state_dict("dc_vae"))
    state["vae.p_x_nn.2.conv.weight"] = np.zeros((64, 64, 3, 3), np.float32)
    with pytest.raises(cr.ConversionError, match=r"key vae\.p_x_nn\.2\.conv\.weight has "
                       r"shape \(64, 64, 3, 3\).*needs \(64, 64, 5, 5\)"):
        cr.convert_state_dict("dc_vae", state, shapes)
    # Another model's checkpoint: its keys are missing and unexpected.
    with pytest.raises(cr.ConversionError, match="missing key.*unexpected key"):
        cr.convert_state_dict("bd_vae", numpy_state(reference_state_dict("dc_vae")),
                              shapes_of("bd_vae"))


def test_optimizer_moments_follow_the_weights_layouts():
    model = "genesis"
    state = reference_state_dict(model, seed=5)
    optimiser = adam_state(state, steps=3)
    shapes = shapes_of(model)
    trainable = {p for p, v in warm_start_lib.weights_of(built(model)).items() if v.trainable}
    kind, slots, step, hyper, problem = cr.convert_optimizer_state(
        model, numpy_state(state), cr._numpy(optimiser), shapes, trainable)
    assert problem is None and kind == "torch_adam" and step == 3
    assert hyper == {"learning_rate": 1e-4, "epsilon": 1e-8, "beta_1": 0.9, "beta_2": 0.999}
    assert set(slots) == trainable
    params = [k for k in state if k != "std" and not k.endswith(BUFFERS)]
    moments = {key: optimiser["state"][i] for i, key in enumerate(params)}
    for slot, name in ((0, "exp_avg"), (1, "exp_avg_sq")):
        as_state = {k: m[name] for k, m in moments.items()}
        as_state.update({k: v for k, v in state.items() if k not in as_state})
        oracle = expected_variables(model, as_state)
        for path in trainable:
            if path.endswith("lstm/bias") or path.endswith("lstm_cell/bias"):
                # b_ih and b_hh get the same gradient: the Keras bias takes their mean
                oracle[path] = oracle[path] / 2.0
            np.testing.assert_array_equal(slots[path][slot], oracle[path], err_msg=path)
    # Parameters that do not line up (another parameter count): no mapping.
    optimiser["param_groups"][0]["params"] = optimiser["param_groups"][0]["params"][:-1]
    del optimiser["state"][len(params) - 1]
    del optimiser["state"][0]
    optimiser["state"][0] = {"step": torch.tensor(3.0), "exp_avg": torch.zeros(5),
                             "exp_avg_sq": torch.zeros(5)}
    *_, problem = cr.convert_optimizer_state(model, numpy_state(state), cr._numpy(optimiser),
                                             shapes, trainable)
    assert "line up" in problem


def test_rmsprop_state_is_mapped_and_other_optimizers_reset():
    model = "dc_vae"
    state = reference_state_dict(model, seed=6)
    shapes = shapes_of(model)
    trainable = set(shapes)
    template = torch.nn.Parameter(torch.zeros(1))
    rmsprop = torch.optim.RMSprop([template], lr=1e-4)
    template.grad = torch.ones(1)
    rmsprop.step()
    saved = rmsprop.state_dict()
    generator = torch.Generator().manual_seed(2)
    saved["state"] = {i: {"step": torch.tensor(5.0),
                          "square_avg": torch.rand(value.shape, generator=generator)}
                      for i, value in enumerate(state.values())}
    saved["param_groups"][0]["params"] = list(range(len(state)))
    kind, slots, step, hyper, problem = cr.convert_optimizer_state(
        model, numpy_state(state), cr._numpy(saved), shapes, trainable)
    assert (kind, step, problem) == ("torch_rmsprop", 5, None)
    assert hyper == {"learning_rate": 1e-4, "epsilon": 1e-8, "alpha": 0.99}
    oracle = expected_variables(model, {k: m["square_avg"] for k, m in
                                        zip(state, saved["state"].values(), strict=True)})
    for path in trainable:
        np.testing.assert_array_equal(slots[path][0], oracle[path], err_msg=path)
    saved["param_groups"][0]["momentum"] = 0.9
    *_, problem = cr.convert_optimizer_state(model, numpy_state(state), cr._numpy(saved),
                                             shapes, trainable)
    assert "momentum" in problem
    sgd = {"state": {0: {"momentum_buffer": np.zeros(3)}}, "param_groups": [{"lr": 0.1}]}
    *_, problem = cr.convert_optimizer_state(model, numpy_state(state), sgd, shapes,
                                             trainable)
    assert "momentum_buffer" in problem and "not Adam" in problem


# -- each ported layer type against torch.nn ------------------------------------------------

def _tf(x):
    """NCHW torch tensor -> NHWC tf tensor."""
    return tf.constant(x.permute(0, 2, 3, 1).numpy())


def _close(tf_value, torch_value):
    np.testing.assert_allclose(np.asarray(tf_value), torch_value.detach().numpy(),
                               atol=ATOL, rtol=0)


def _assign(layer, state, model_free_rules):
    for variable in layer.weights:
        name = variable.path.split("/", 1)[1] if "/" in variable.path else variable.path
        keys, rule = model_free_rules[name]
        variable.assign(rule.to_keras(*(state[k].detach().numpy() for k in keys)))


def _random_batch_norm(norm, generator):
    norm.weight.data = torch.rand(norm.weight.shape, generator=generator) + 0.5
    norm.bias.data = torch.randn(norm.bias.shape, generator=generator)
    norm.running_mean.data = torch.randn(norm.running_mean.shape, generator=generator)
    norm.running_var.data = torch.rand(norm.running_var.shape, generator=generator) + 0.5
    return norm.eval()


@pytest.mark.parametrize("case", ["conv_stride2", "transposed_stride2", "transposed_stem"])
def test_gated_convs_with_batch_norm_in_inference_equal_torch(case):
    from genesis_tf.layers.gated_conv import GatedConv2D

    generator = torch.Generator().manual_seed(7)
    transpose = case != "conv_stride2"
    stem = case == "transposed_stem"
    cin, filters, k = (16, 8, 6) if stem else (6, 5, 5)
    size = 1 if stem else 9
    if transpose:
        conv = torch.nn.ConvTranspose2d(cin, 2 * filters, k, stride=1 if stem else 2,
                                        padding=0 if stem else 2,
                                        output_padding=0 if stem else 1)
    else:
        conv = torch.nn.Conv2d(cin, 2 * filters, k, stride=2, padding=2)
    h_norm = _random_batch_norm(torch.nn.BatchNorm2d(filters), generator)
    g_norm = _random_batch_norm(torch.nn.BatchNorm2d(filters), generator)
    x = torch.randn(2, cin, size, size, generator=generator)
    with torch.no_grad():
        h, g = conv(x).chunk(2, dim=1)
        expected = h_norm(h) * torch.sigmoid(g_norm(g))
    layer = GatedConv2D(filters, k, strides=1 if stem else 2, padding=0 if stem else 2,
                        output_padding=0 if stem else 1 if transpose else 0,
                        transpose=transpose, name="gated")
    layer.build((2, size, size, cin))
    state = {"conv.weight": conv.weight, "conv.bias": conv.bias}
    rules = {"conv/kernel": (["conv.weight"], cr.CONV_TRANSPOSE if transpose else cr.CONV),
             "conv/bias": (["conv.bias"], cr.COPY)}
    for name, norm in (("h_norm", h_norm), ("g_norm", g_norm)):
        for torch_name, keras_name in cr.BATCH_NORM:
            state[f"{name}.{torch_name}"] = getattr(norm, torch_name)
            rules[f"{name}/{keras_name}"] = ([f"{name}.{torch_name}"], cr.COPY)
    _assign(layer, state, rules)
    _close(layer(_tf(x), training=False), expected.permute(0, 2, 3, 1))


def test_dense_and_lstm_cells_equal_torch():
    from genesis_tf.layers.initializers import TorchDense, TorchLSTM, TorchLSTMCell

    generator = torch.Generator().manual_seed(11)
    linear = torch.nn.Linear(12, 7)
    x = torch.randn(3, 12, generator=generator)
    dense = TorchDense(7, name="dense")
    dense.build((3, 12))
    _assign(dense, {"weight": linear.weight, "bias": linear.bias},
            {"kernel": (["weight"], cr.DENSE), "bias": (["bias"], cr.COPY)})
    _close(dense(tf.constant(x.numpy())), linear(x))

    torch_lstm = torch.nn.LSTM(6, 4, batch_first=True)
    for p in torch_lstm.parameters():
        p.data = torch.randn(p.shape, generator=generator) * 0.5
    lstm_state = dict(torch_lstm.named_parameters())
    rules = {"kernel": (["weight_ih_l0"], cr.LSTM_KERNEL),
             "recurrent_kernel": (["weight_hh_l0"], cr.LSTM_KERNEL),
             "bias": (["bias_ih_l0", "bias_hh_l0"], cr.LSTM_BIAS)}
    sequence = torch.randn(2, 5, 6, generator=generator)
    h0, c0 = (torch.randn(1, 2, 4, generator=generator) for _ in range(2))
    with torch.no_grad():
        outputs, (h, c) = torch_lstm(sequence, (h0, c0))
    keras_lstm = TorchLSTM(4, return_sequences=True, return_state=True, name="lstm")
    keras_lstm.build((2, 5, 6))
    for variable in keras_lstm.weights:
        keys, rule = rules[variable.path.rsplit("/", 1)[1]]
        variable.assign(rule.to_keras(*(lstm_state[k].detach().numpy() for k in keys)))
    got, got_h, got_c = keras_lstm(tf.constant(sequence.numpy()),
                                   initial_state=[tf.constant(h0[0].numpy()),
                                                  tf.constant(c0[0].numpy())])
    _close(got, outputs)
    _close(got_h, h[0])
    _close(got_c, c[0])
    cell = TorchLSTMCell(4, name="cell")
    cell.build((2, 6))
    for variable in cell.weights:
        keys, rule = rules[variable.path.rsplit("/", 1)[1]]
        variable.assign(rule.to_keras(*(lstm_state[k].detach().numpy() for k in keys)))
    torch_cell = torch.nn.LSTMCell(6, 4)
    torch_cell.load_state_dict({k.replace("_l0", ""): v for k, v in lstm_state.items()})
    with torch.no_grad():
        th, tc = torch_cell(sequence[:, 0], (h0[0], c0[0]))
    out, (kh, kc) = cell(tf.constant(sequence[:, 0].numpy()),
                         [tf.constant(h0[0].numpy()), tf.constant(c0[0].numpy())])
    _close(out, th)
    _close(kh, th)
    _close(kc, tc)


def test_instance_norm_block_equals_torch():
    from genesis_tf.layers.unet import UNetBlock

    generator = torch.Generator().manual_seed(13)
    conv = torch.nn.Conv2d(5, 6, 3, padding=1, bias=False)
    norm = torch.nn.InstanceNorm2d(6, affine=True, eps=1e-5)
    norm.weight.data = torch.rand(6, generator=generator) + 0.5
    norm.bias.data = torch.randn(6, generator=generator)
    x = torch.randn(2, 5, 8, 8, generator=generator)
    with torch.no_grad():
        expected = torch.relu(norm(conv(x)))
    block = UNetBlock(6, name="block")
    block(_tf(x))
    _assign(block, {"0.weight": conv.weight, "1.weight": norm.weight, "1.bias": norm.bias},
            {"conv/kernel": (["0.weight"], cr.CONV), "norm/gamma": (["1.weight"], cr.COPY),
             "norm/beta": (["1.bias"], cr.COPY)})
    skip, _ = block(_tf(x))
    _close(skip, expected.permute(0, 2, 3, 1))


def test_component_encoder_flattening_equals_torch():
    """Convs with padding 1 and stride 2, then a linear layer on the flattened map: the
    reference flattens (c, h, w), Keras (h, w, c)."""
    from genesis_tf.layers.component_vae import ComponentEncoder

    generator = torch.Generator().manual_seed(17)
    reference = torch.nn.Sequential(
        torch.nn.Conv2d(4, 32, 3, 2, 1), torch.nn.ELU(), torch.nn.Conv2d(32, 32, 3, 2, 1),
        torch.nn.ELU(), torch.nn.Conv2d(32, 64, 3, 2, 1), torch.nn.ELU(),
        torch.nn.Conv2d(64, 64, 3, 2, 1), torch.nn.ELU(), torch.nn.Flatten(),
        torch.nn.Linear(256, 256), torch.nn.ELU(), torch.nn.Linear(256, 2 * 3))
    x = torch.randn(2, 4, 32, 32, generator=generator)
    with torch.no_grad():
        mean, pre_scale = reference(x).chunk(2, dim=1)
    encoder = ComponentEncoder(latent_size=3, name="encoder")
    encoder(_tf(x))
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    shapes = {"encoder/conv_3/kernel": (3, 3, 64, 64)}
    rules = {}
    for entry in cr._component_encoder("module", shapes):
        rules[entry.path.split("/", 1)[1]] = (list(entry.keys), entry.rule)
    _assign(encoder, state, rules)
    got_mean, got_scale = encoder(_tf(x))
    _close(got_mean, mean)
    _close(got_scale, torch.nn.functional.softplus(pre_scale + 0.5) + 1e-8)


def test_linear_to_a_channels_first_map_equals_torch():
    """MONet's bottleneck MLP: the reference views the last linear's output as (c, h, w)."""
    generator = torch.Generator().manual_seed(19)
    linear = torch.nn.Linear(5, 3 * 4 * 4)
    x = torch.randn(2, 5, generator=generator)
    with torch.no_grad():
        expected = linear(x).view(2, 3, 4, 4).permute(0, 2, 3, 1)
    kernel = cr.dense_to_chw(3).to_keras(linear.weight.detach().numpy())
    bias = cr.dense_to_chw(3, bias=True).to_keras(linear.bias.detach().numpy())
    got = (x.numpy() @ kernel + bias).reshape(2, 4, 4, 3)
    _close(got, expected)


# -- the command and the run directory -------------------------------------------------------

SMALL = {"image_size": 32, "num_slots": 3}


@pytest.fixture(scope="module")
def converted_run(tmp_path_factory):
    """python -m genesis_tf.convert_reference (BUILD.md's command, which forwards to
    genesis_tf.tools.convert_reference) on a torch.save'd GENESIS in a fresh process (32×32
    and K=3 to be quick)."""
    shapes = {**AT_32, "std": (1, 1, 1, 1, SMALL["num_slots"])}
    folder = tmp_path_factory.mktemp("reference")
    source = folder / "model.ckpt-FINAL"
    state = save_reference(source, "genesis", seed=21, iter_idx=4321, shapes=shapes)
    out = folder / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "genesis_tf.convert_reference", f"--checkpoint={source}",
         "--model=genesis", "--image_size=32", "--num_slots=3", f"--model_dir={out}",
         "--dataset=multi_dsprites/colored"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return out, state, result


def test_command_writes_a_run_that_restores_with_its_state(converted_run):
    out, state, result = converted_run
    assert "step 4321" in result.stdout and "optimizer torch_adam" in result.stdout
    model, path, facts = runs.restore_with_state(str(out))
    assert path.endswith("ckpt-4321")
    assert facts["step"] == 4321
    assert facts["geco_beta"] == pytest.approx(0.37)
    assert facts["geco_err_ema"] == pytest.approx(2500.0)
    assert type(model).__name__ == "Genesis" and model.num_slots == 3
    assert model.pixel_std == pytest.approx(0.7)
    weights = warm_start_lib.weights_of(model)
    oracle = expected_variables("genesis", state)
    for path in ("mask_decoder/gated_deconv_2/conv/kernel", "lstm/bias",
                 "encoder/hidden/kernel", "mask_encoder/gated_conv_1/g_norm/moving_variance"):
        np.testing.assert_array_equal(weights[path].numpy(), oracle[path], err_msg=path)
    assert runs.read_run_info(str(out))["dataset"] == "multi_dsprites/colored"
    bindings = (out / "operative_config.gin").read_text().splitlines()
    assert "train.dataset = 'multi_dsprites/colored'" in bindings
    assert "make_optimizer.name = 'torch_adam'" in bindings
    assert "make_optimizer.learning_rate = 0.0001" in bindings
    description = json.loads((out / "model.json").read_text())
    assert description["config"] == {**description["config"], **SMALL}


def test_operative_config_rebuilds_the_model_and_train_restores_the_checkpoint(converted_run):
    import gin

    from genesis_tf.training import TrainState, config

    out, _, _ = converted_run
    gin.clear_config()
    try:
        config.parse([str(out / "operative_config.gin")])
        factory = gin.query_parameter("train.model").scoped_configurable_fn
        image_size = gin.query_parameter("train.image_size")
        net = factory(image_size=image_size)
        assert runs.description_changes(
            runs.read_description(str(out)), config_of(net)) == []
        # What train() builds and restores (genesis_tf/training/state.py), with the
        # optimizer the file configures.
        state = TrainState.build(factory, image_size, tf.distribute.get_strategy())
    finally:
        gin.clear_config()
    assert state.restore_or_initialize(str(out)) == tf.train.latest_checkpoint(str(out))
    assert int(state.step.numpy()) == 4321 and int(state.optimizer.iterations.numpy()) == 2
    assert bool(state.geco.initialised.numpy())
    assert float(state.geco.beta.numpy()) == pytest.approx(0.37)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A BD-VAE (32×32) converted by main() in this process from a file without optimizer
    state: (run directory, source file, stderr)."""
    shapes = AT_32
    folder = tmp_path_factory.mktemp("vae")
    source = folder / "bd.ckpt"
    save_reference(source, "bd_vae", iter_idx=9, optimiser=False, shapes=shapes)
    out = folder / "run"
    code = _command([f"--checkpoint={source}", "--model=bd_vae", "--image_size=32",
                     f"--model_dir={out}"])
    assert code == 0
    return out, source, shapes


def test_converted_model_exports_and_decomposes(vae_run, tmp_path):
    from genesis_tf.export import export_model

    out, _, _ = vae_run
    model = runs.restore(str(out))
    target = tmp_path / "export" / "9"
    export_model(model, str(target))
    loaded = tf.saved_model.load(str(target))
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    result = loaded.signatures["decompose"](images=tf.constant(images))
    assert result["masks"].shape == (2, 1, 32, 32)
    # The exported decomposition is the converted model's (posterior means).
    direct = model(tf.constant(images), training=False, deterministic=True)
    np.testing.assert_allclose(result["reconstruction"].numpy(), direct.recon.numpy(),
                               atol=1e-5)


# -- errors ----------------------------------------------------------------------------------

def _command(argv):
    """The command as genesis-convert-reference runs it, in this process: the flags parsed
    from argv (restored afterwards), a UserError of main reported by genesis_tf.cli."""
    from absl import flags
    from absl.testing import flagsaver

    cr.define_flags()
    with flagsaver.flagsaver():
        flags.FLAGS(["genesis-convert-reference", *argv])
        return cli._reporting_user_errors(cr.main, ["genesis-convert-reference"])


def _main(argv, capsys):
    code = _command(argv)
    return code, capsys.readouterr().err


def test_help_of_the_forwarding_command_lists_the_flags():
    """--help through `python -m genesis_tf.convert_reference` (a fresh process) shows the
    tool's flags, filed under genesis_tf.tools.convert_reference, and exits 0."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "genesis_tf.convert_reference", "--help"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ("--checkpoint", "--model", "--model_dir", "--num_slots", "--dataset"):
        assert flag in result.stdout, result.stdout


def test_missing_torch_names_the_extra(tmp_path, capsys, monkeypatch):
    source = tmp_path / "model.ckpt"
    source.write_bytes(b"anything")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    code, err = _main([f"--checkpoint={source}", "--model=genesis",
                       f"--model_dir={tmp_path / 'run'}"], capsys)
    assert code == 2
    assert err.strip() == ("error: reading a PyTorch checkpoint needs torch: "
                           "pip install genesis_tf[torch]")


def test_files_that_are_not_checkpoints_are_refused(tmp_path, capsys):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(256))
    code, err = _main([f"--checkpoint={garbage}", "--model=genesis",
                       f"--model_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and "is not a PyTorch checkpoint" in err and len(err.splitlines()) == 1

    other = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, other)
    code, err = _main([f"--checkpoint={other}", "--model=genesis",
                       f"--model_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and "lacks model_state_dict, beta, err_ema, iter_idx" in err

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model_state_dict": {}, "beta": pathlib.PurePosixPath("x"), "err_ema": 0,
                "iter_idx": 0}, unsafe)  # a class: pickled code that must not run
    code, err = _main([f"--checkpoint={unsafe}", "--model=genesis",
                       f"--model_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and "weights_only=True" in err
    assert not (tmp_path / "run").exists()

    code, err = _main([f"--checkpoint={tmp_path / 'none'}", "--model=genesis",
                       f"--model_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and err.startswith("error: --checkpoint=")


def test_command_resets_an_unmappable_optimizer_and_refuses_an_existing_run(vae_run,
                                                                             capsys):
    out, source, _ = vae_run
    assert runs.training_state(tf.train.latest_checkpoint(str(out)))["step"] == 9
    assert runs.read_run_info(str(out))["dataset"] is None
    code, err = _main([f"--checkpoint={source}", "--model=bd_vae", f"--model_dir={out}"],
                      capsys)
    assert code == 2 and "already holds a run" in err


def test_command_names_a_mis_shaped_key(vae_run, tmp_path, capsys):
    _, _, shapes = vae_run
    source = tmp_path / "bad.ckpt"
    state = reference_state_dict("bd_vae", seed=2, shapes=shapes)
    state["vae.p_x_mean.weight"] = torch.zeros(3, 64, 3, 3)
    torch.save({"model_state_dict": state, "optimiser_state_dict": {}, "beta": 1.0,
                "err_ema": 0.0, "iter_idx": 7}, source)
    code, err = _main([f"--checkpoint={source}", "--model=bd_vae", "--image_size=32",
                       f"--model_dir={tmp_path / 'bad'}"], capsys)
    assert code == 2 and "key vae.p_x_mean.weight has shape (3, 64, 3, 3)" in err
    assert len(err.strip().splitlines()) == 1


def test_num_slots_must_agree_with_the_checkpoints_std(tmp_path, capsys):
    source = tmp_path / "monet.ckpt"
    torch.save({"model_state_dict": reference_state_dict("monet"), "beta": 1.0,
                "err_ema": 0.0, "iter_idx": 0}, source)
    code, err = _main([f"--checkpoint={source}", "--model=monet", "--num_slots=7",
                       f"--model_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and "std records K=5" in err


def test_an_image_size_the_model_cannot_have_is_one_line(tmp_path, capsys):
    source = tmp_path / "monet.ckpt"
    torch.save({"model_state_dict": reference_state_dict("monet"), "beta": 1.0,
                "err_ema": 0.0, "iter_idx": 0}, source)
    code, err = _main([f"--checkpoint={source}", "--model=monet", "--image_size=48",
                       f"--model_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and "cannot build MONet with these flags" in err and "got 48" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
