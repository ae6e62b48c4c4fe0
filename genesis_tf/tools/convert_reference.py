"""Converts the authors' released PyTorch checkpoints into genesis_tf run directories.

    python -m genesis_tf.convert_reference --checkpoint=model.ckpt-FINAL --model=genesis \\
        --image_size=64 --num_slots=7 --model_dir=runs/gqn_reference \\
        [--dataset=gqn_rooms_ring_camera]
    python -m genesis_tf.convert_reference --checkpoint=model.ckpt-FINAL \\
        --model=genesis_v2 --num_slots=7 --model_dir=runs/objects_room_v2_reference \\
        [--dataset=objects_room/train]

(or `genesis-convert-reference ...`, or `python -m genesis_tf.tools.convert_reference ...`:
the module lives in tools/, genesis_tf.convert_reference forwards here).

The file (applied-ai-lab/genesis's training checkpoints) holds ``model_state_dict``,
``optimiser_state_dict``, ``beta``, ``err_ema`` and ``iter_idx``. It is read with
``torch.load(..., weights_only=True)`` (a file from the internet never runs code), which
needs torch: ``pip install genesis_tf[torch]``. The run directory it writes holds
model.json, a training checkpoint ckpt-<iter_idx> (model, optimizer, GECO's β and err_ema,
the step; the layout of genesis_tf.training.state.checkpoint_of) and an
operative_config.gin with the model's and the optimizer's settings (and train.dataset when
--dataset is given), so that evaluate, visualise and export accept it, and training
continues with

    python -m genesis_tf.train --gin_file=runs/gqn_reference/operative_config.gin \\
        --model_dir=runs/gqn_reference

Every key of the state dict is mapped to one genesis_tf variable (with the layout rules of
SPEC.md's porting notes) or explicitly ignored (batch norm's ``num_batches_tracked``, the
per-slot pixel standard deviation ``std``, which sets the model's pixel_std instead, and
the coordinate grids ``*.pixel_coords.g_1/g_2`` of older checkpoints); a missing, extra or
mis-shaped key is an error naming it. Adam's moments (or RMSprop's mean square) are mapped
with the same layout rules; where that is impossible the optimizer starts afresh, with a
warning. ``--num_slots`` defaults to the K that ``std`` records.

GENESIS-V2 (``--model=genesis_v2``; GENESIS_V2.md §4: 78 keys at 64×64, 84 at 128, 72 at
32) records neither K nor a pixel std (0.7 and the gaussian kernel are the reference's
defaults, used here): ``--num_slots`` gives K, else the GENESIS-V2
experiment config (gin_configs/<dataset>_genesis_v2.gin) whose train.dataset is
``--dataset``; the image size comes from the encoder's depth (``--image_size`` may be left
out), ``att_process.log_sigma`` (float64) becomes float32 and the two LSTM biases one.

Exit codes: 0 written, 2 a bad flag, a file that is not such a checkpoint, a checkpoint of
another model or size, missing torch (one line on stderr says which).
"""
import functools
import glob
import inspect
import math
import os
import re
import sys
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from absl import app, flags

from genesis_tf import cli
from genesis_tf.errors import UserError

# --model -> genesis_tf model class name (genesis_tf.models.MODELS).
MODEL_CLASSES = {"genesis": "Genesis", "genesis_s": "GenesisS", "genesis_v2": "GenesisV2",
                 "monet": "MONet", "dc_vae": "DCVAE", "bd_vae": "BDVAE"}
SLOT_MODELS = ("genesis", "genesis_s", "genesis_v2", "monet")
REQUIRED_ENTRIES = ("model_state_dict", "beta", "err_ema", "iter_idx")
INSTALL_TORCH = "pip install genesis_tf[torch]"
DEFAULT_LEARNING_RATE = 1e-4  # the reference's
DEFAULT_IMAGE_SIZE = 64
# GENESIS-V2's checkpoints do not record K; the experiment configs that give it per dataset
# (gin_configs/<dataset>_genesis_v2.gin), and the reference's values for the message.
V2_CONFIGS = "*_genesis_v2.gin"
V2_SLOTS = ("the reference's K: 5 Multi-dSprites, 7 ObjectsRoom and GQN, 9 ShapeStacks, "
            "11 CLEVR, 4 Tetrominoes")


class ConversionError(UserError, ValueError):
    """The file is not a checkpoint of the model asked for; the message names the key."""


class TorchMissingError(UserError, ImportError):
    """Reading the reference's file needs torch, which is not installed."""


# -- layout rules ----------------------------------------------------------------------------

class Rule(NamedTuple):
    """How one genesis_tf variable is made of PyTorch tensors.

    to_keras(*torch arrays) -> the Keras array; torch_shapes(Keras shape) -> the PyTorch
    shape of each source key; moments(*torch arrays) -> the Keras optimizer slot (the
    same map for linear layouts; the mean for LSTM's two biases)."""

    name: str
    to_keras: Callable
    torch_shapes: Callable
    moments: Callable = None

    def moment(self, *arrays):
        return (self.moments or self.to_keras)(*arrays)


def _kernel_4d(w):
    # conv (out, in, kh, kw) -> (kh, kw, in, out); transposed conv (in, out, kh, kw) ->
    # (kh, kw, out, in): the same axis permutation, no spatial flip.
    return np.transpose(w, (2, 3, 1, 0))


def _shape_4d(s):
    return [(s[3], s[2], s[0], s[1])]


COPY = Rule("copy", lambda a: a, lambda s: [tuple(s)])
CONV = Rule("conv", _kernel_4d, _shape_4d)
CONV_TRANSPOSE = Rule("conv_transpose", _kernel_4d, _shape_4d)
DENSE = Rule("dense", lambda w: np.transpose(w), lambda s: [(s[1], s[0])])
LSTM_KERNEL = Rule("lstm_kernel", lambda w: np.transpose(w), lambda s: [(s[1], s[0])])
LSTM_BIAS = Rule("lstm_bias", lambda b_ih, b_hh: b_ih + b_hh, lambda s: [tuple(s)] * 2,
                 moments=lambda m_ih, m_hh: (m_ih + m_hh) / 2.0)


def _square_side(features, channels, key):
    side = math.isqrt(max(features // max(channels, 1), 0))
    if side * side * channels != features:
        raise ConversionError(f"{key}: {features} features are not a square map of "
                              f"{channels} channels")
    return side


def dense_from_chw(channels):
    """A linear layer reading a flattened [C, H, W] map (PyTorch) -> a Dense layer reading
    the flattened [H, W, C] map (Keras): the kernel's rows permuted."""

    def to_keras(w):
        out, features = w.shape
        side = _square_side(features, channels, "dense_from_chw")
        return (w.reshape(out, channels, side, side).transpose(2, 3, 1, 0)
                .reshape(features, out))

    return Rule("dense_from_chw", to_keras, lambda s: [(s[1], s[0])])


def dense_to_chw(channels, bias=False):
    """A linear layer whose output is viewed as [C, H, W] (PyTorch) -> a Dense layer whose
    output is reshaped to [H, W, C] (Keras): the kernel's columns and the bias permuted."""

    def to_keras(w):
        if bias:
            side = _square_side(w.shape[0], channels, "dense_to_chw")
            return w.reshape(channels, side, side).transpose(1, 2, 0).reshape(-1)
        features, inputs = w.shape
        side = _square_side(features, channels, "dense_to_chw")
        return (w.reshape(channels, side, side, inputs).transpose(3, 1, 2, 0)
                .reshape(inputs, features))

    return Rule("dense_to_chw_bias" if bias else "dense_to_chw", to_keras,
                (lambda s: [tuple(s)]) if bias else (lambda s: [(s[1], s[0])]))


class Entry(NamedTuple):
    """One genesis_tf variable (path below the model) and the PyTorch keys it comes from."""

    path: str
    keys: tuple
    rule: Rule


# -- the key tables ------------------------------------------------------------------------

BATCH_NORM = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
              ("running_var", "moving_variance"))


def _layer(prefix, path, kernel_rule=DENSE, bias=True):
    entries = [Entry(f"{path}/kernel", (f"{prefix}.weight",), kernel_rule)]
    if bias:
        entries.append(Entry(f"{path}/bias", (f"{prefix}.bias",), COPY))
    return entries


def _gated(prefix, path, rule, normalized, ignored):
    """A gated (transposed) conv: prefix.conv and, normalised, prefix.h_norm / g_norm."""
    entries = _layer(f"{prefix}.conv", f"{path}/conv", rule)
    if normalized:
        for norm in ("h_norm", "g_norm"):
            for torch_name, keras_name in BATCH_NORM:
                entries.append(Entry(f"{path}/{norm}/{keras_name}",
                                     (f"{prefix}.{norm}.{torch_name}",), COPY))
            ignored.add(f"{prefix}.{norm}.num_batches_tracked")
    return entries


def _lstm(prefix, path):
    return [Entry(f"{path}/kernel", (f"{prefix}.weight_ih_l0",), LSTM_KERNEL),
            Entry(f"{path}/recurrent_kernel", (f"{prefix}.weight_hh_l0",), LSTM_KERNEL),
            Entry(f"{path}/bias", (f"{prefix}.bias_ih_l0", f"{prefix}.bias_hh_l0"),
                  LSTM_BIAS)]


def _broadcast_decoder(prefix, path, ignored, hidden_1x1=False, out=True):
    """prefix.seq.0 broadcasts (legacy grids), .1/.3/.5/.7 are 3×3 convs, .9 a 1×1."""
    entries = []
    for i in range(4):
        entries += _layer(f"{prefix}.seq.{2 * i + 1}", f"{path}/conv_{i}", CONV)
    if hidden_1x1:
        entries += _layer(f"{prefix}.seq.9", f"{path}/hidden_1x1", CONV)
    elif out:
        entries += _layer(f"{prefix}.seq.9", f"{path}/out", CONV)
    ignored.update({f"{prefix}.seq.0.pixel_coords.g_1", f"{prefix}.seq.0.pixel_coords.g_2"})
    return entries


def _mask_vae(prefix, encoder, decoder, normalized, ignored, encoder_head="head",
              decoder_out="to_logits"):
    """The gated-conv encoder (q_z_nn.0-5) and decoder (p_x_nn.0-5, p_x_mean)."""
    entries = []
    for i in range(5):
        entries += _gated(f"{prefix}.q_z_nn.{i}", f"{encoder}/gated_conv_{i}", CONV,
                          normalized, ignored)
    entries += _gated(f"{prefix}.q_z_nn.5", f"{encoder}/{encoder_head}", CONV, False, ignored)
    if decoder is not None:
        entries += _gated(f"{prefix}.p_x_nn.0", f"{decoder}/stem", CONV_TRANSPOSE, False,
                          ignored)
        for i in range(5):
            entries += _gated(f"{prefix}.p_x_nn.{i + 1}", f"{decoder}/gated_deconv_{i}",
                              CONV_TRANSPOSE, normalized, ignored)
        entries += _layer(f"{prefix}.p_x_mean", f"{decoder}/{decoder_out}", CONV)
    return entries


def _component_encoder(prefix, shapes):
    """comp_vae.encoder_module.module: convs .0/.2/.4/.6, flatten, linears .9 and .11."""
    entries = []
    for i in range(4):
        entries += _layer(f"{prefix}.{2 * i}", f"encoder/conv_{i}", CONV)
    channels = _shape(shapes, "encoder/conv_3/kernel")[-1]
    entries += _layer(f"{prefix}.9", "encoder/hidden", dense_from_chw(channels))
    entries += _layer(f"{prefix}.11", "encoder/head")
    return entries


def _norm(prefix, path):
    """A group, layer or instance norm's affine: prefix.weight -> γ, prefix.bias -> β."""
    return [Entry(f"{path}/gamma", (f"{prefix}.weight",), COPY),
            Entry(f"{path}/beta", (f"{prefix}.bias",), COPY)]


def _unet(prefix, path, shapes):
    """The U-Net of MONet's attention and GENESIS-V2's encoder: prefix.down.i / up.i
    (.0 a bias-free conv, .1 its norm) and the bottleneck MLP prefix.mlp.1/.3/.5, whose
    first input and last output are flattened (c, h, w) maps."""
    entries = []
    blocks = sum(1 for p in shapes if re.fullmatch(rf"{path}/down_\d+/conv/kernel", p))
    for side in ("down", "up"):
        for i in range(blocks):
            entries += _layer(f"{prefix}.{side}.{i}.0", f"{path}/{side}_{i}/conv", CONV,
                              bias=False)
            entries += _norm(f"{prefix}.{side}.{i}.1", f"{path}/{side}_{i}/norm")
    channels = _shape(shapes, f"{path}/down_{blocks - 1}/conv/kernel")[-1]
    entries += _layer(f"{prefix}.mlp.1", f"{path}/mlp_0", dense_from_chw(channels))
    entries += _layer(f"{prefix}.mlp.3", f"{path}/mlp_1")
    entries += [Entry(f"{path}/mlp_2/kernel", (f"{prefix}.mlp.5.weight",),
                      dense_to_chw(channels)),
                Entry(f"{path}/mlp_2/bias", (f"{prefix}.mlp.5.bias",),
                      dense_to_chw(channels, bias=True))]
    return entries


def _genesis_v2(shapes):
    """GENESIS-V2 (GENESIS_V2.md §4): encoder, att_process (log σ, the gated colour head),
    seg_head, feat_head, z_head, decoder_module and the prior."""
    entries = _unet("encoder", "encoder", shapes)
    entries.append(Entry("ic_sbp/log_sigma", ("att_process.log_sigma",), COPY))  # float64
    if "colour_head/gate" in shapes:  # semiconv (the default): conv, then the gate
        entries += _layer("att_process.colour_head.conv", "colour_head/conv", CONV)
        entries.append(Entry("colour_head/gate", ("att_process.colour_head.gate.gate",), COPY))
    else:  # semiconv=False: the plain 1×1 conv
        entries += _layer("att_process.colour_head", "colour_head/conv", CONV)
    entries += _layer("seg_head.0", "seg_head/conv", CONV, bias=False)
    entries += _norm("seg_head.1", "seg_head/norm")
    entries += _layer("feat_head.0.0", "feat_head/conv", CONV, bias=False)
    entries += _norm("feat_head.0.1", "feat_head/norm")
    entries += _layer("feat_head.1", "feat_out", CONV)
    entries += _norm("z_head.0", "posterior/norm")
    entries += _layer("z_head.1", "posterior/hidden") + _layer("z_head.3", "posterior/head")
    for i in range(4):  # decoder_module.0 broadcasts; then (transposed conv, norm, ReLU)×4
        entries += _layer(f"decoder_module.{3 * i + 1}", f"decoder/conv_{i}", CONV_TRANSPOSE)
        entries += _norm(f"decoder_module.{3 * i + 2}", f"decoder/norm_{i}")
    entries += _layer("decoder_module.13", "decoder/out", CONV)
    entries += _lstm("prior_lstm", "prior/lstm/lstm_cell")
    entries += _layer("prior_linear", "prior/head")
    return entries


def _shape(shapes, path):
    if path not in shapes:
        raise ConversionError(f"the genesis_tf model has no variable {path}")
    return tuple(shapes[path])


def reference_table(model, shapes):
    """(entries, ignored keys) of the reference's state dict for `model` (a --model name),
    given the genesis_tf model's variable shapes {path below the model: shape}."""
    ignored = set()
    if model in ("genesis", "genesis_s"):
        ignored.add("std")
        entries = _mask_vae("att_process.core", "mask_encoder", "mask_decoder", True, ignored)
        entries += _layer("att_process.core.q_z_mean", "first_mean")
        entries += _layer("att_process.core.q_z_var.0", "first_scale")
        entries += _lstm("att_process.lstm", "lstm")
        entries += _layer("att_process.linear", "head")
        entries += _lstm("prior_lstm", "mask_prior/lstm/lstm_cell")
        entries += _layer("prior_linear", "mask_prior/head")
        if model == "genesis":
            entries += _component_encoder("comp_vae.encoder_module.module", shapes)
            entries += _broadcast_decoder("comp_vae.decoder_module", "decoder", ignored)
            for i, name in enumerate(("hidden_0", "hidden_1", "head")):
                entries += _layer(f"prior_mlp.{2 * i}", f"component_prior/{name}")
        else:
            entries += _broadcast_decoder("decoder", "component_decoder", ignored)
    elif model == "monet":
        ignored.add("std")
        entries = _unet("att_process.core", "attention", shapes)
        entries += _layer("att_process.core.final_conv", "attention/final_conv", CONV)
        entries += _component_encoder("comp_vae.encoder_module.module", shapes)
        entries += _broadcast_decoder("comp_vae.decoder_module", "decoder", ignored)
    elif model == "genesis_v2":
        entries = _genesis_v2(shapes)
    elif model in ("dc_vae", "bd_vae"):
        dc = model == "dc_vae"
        entries = _mask_vae("vae", "encoder", "decoder" if dc else None, False, ignored,
                            decoder_out="to_rgb")
        entries += _layer("vae.q_z_mean", "posterior_mean")
        entries += _layer("vae.q_z_var.0", "posterior_scale")
        if not dc:
            entries += _broadcast_decoder("vae.p_x_nn.1", "decoder", ignored, hidden_1x1=True)
            entries += _layer("vae.p_x_mean", "decoder/out", CONV)
    else:
        raise ConversionError(f"unknown model {model!r}; known: {', '.join(MODEL_CLASSES)}")
    return entries, ignored


def _more(items, limit=3):
    items = sorted(items)
    text = ", ".join(items[:limit])
    return text + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def expected_torch_shapes(model, shapes):
    """{state-dict key: PyTorch shape} that `model` with these variable shapes reads (the
    ignored keys left out)."""
    entries, _ = reference_table(model, shapes)
    expected = {}
    for entry in entries:
        for key, shape in zip(entry.keys, entry.rule.torch_shapes(_shape(shapes, entry.path)),
                              strict=True):
            expected[key] = tuple(shape)
    return expected


def convert_state_dict(model, state_dict, shapes):
    """The pure mapping: the reference's state dict (key -> NumPy array) -> {genesis_tf
    variable path: array in Keras layout} for `model` (a --model name), checked against
    the genesis_tf model's variable shapes {path: shape}. Every variable gets a value and
    every key is used or ignored; otherwise ConversionError naming the keys."""
    entries, ignored = reference_table(model, shapes)
    unmapped = set(shapes) - {entry.path for entry in entries}
    if unmapped:  # the table and the model disagree: a bug here, not in the file
        raise ConversionError(f"no reference key fills {_more(unmapped)}")
    expected = expected_torch_shapes(model, shapes)
    missing = [key for key in expected if key not in state_dict]
    extra = [key for key in state_dict if key not in expected and key not in ignored]
    name = MODEL_CLASSES[model]
    if missing or extra:
        parts = ([f"missing key {_more(missing)}"] if missing else []) + (
            [f"unexpected key {_more(extra)}"] if extra else [])
        raise ConversionError(f"the checkpoint is not the reference's {name}: "
                              + "; ".join(parts) + " (check --model)")
    for key, shape in expected.items():
        got = tuple(np.shape(state_dict[key]))
        if got != shape:
            raise ConversionError(
                f"key {key} has shape {got}, the {name} of these flags needs {shape} "
                "(check --model, --image_size and the model's sizes)")
    return {entry.path: np.asarray(
        entry.rule.to_keras(*(np.asarray(state_dict[k], np.float32) for k in entry.keys)),
        np.float32) for entry in entries}


# -- the optimizer ---------------------------------------------------------------------------

BUFFERS = (".running_mean", ".running_var", ".num_batches_tracked")


def parameter_order(state_dict, shapes_by_index, count=None):
    """The state-dict keys of the optimizer's parameter indices: the module's parameters
    in state-dict order (batch-norm statistics are buffers). Whether ``std`` and the legacy
    grids are parameters is not recorded, so each choice is tried; the one whose count
    (`count`, else the largest index with state + 1) and shapes fit the optimizer state
    wins. None when none fits."""
    keys = [k for k in state_dict if not k.endswith(BUFFERS)]
    optional = [k for k in keys if k == "std" or ".pixel_coords." in k]
    count = count or max(shapes_by_index, default=-1) + 1
    fitting = []
    for mask in range(2 ** len(optional)):
        left_out = {k for i, k in enumerate(optional) if not mask >> i & 1}
        order = [k for k in keys if k not in left_out]
        if len(order) < count:
            continue
        if all(tuple(np.shape(state_dict[order[i]])) == tuple(shape)
               for i, shape in shapes_by_index.items()):
            fitting.append(order)
    exact = [order for order in fitting if len(order) == count] or fitting
    return exact[0] if len(exact) == 1 else None


def convert_optimizer_state(model, state_dict, optimiser_state, shapes, trainable):
    """(kind, {path: slots}, step, hyperparameters, problem) of the reference's optimizer
    state: kind 'torch_adam' (slots (m, v)) or 'torch_rmsprop' (slots (v,)); `problem` is
    why it cannot be mapped (then slots is None)."""
    if not isinstance(optimiser_state, dict) or "state" not in optimiser_state:
        return None, None, None, {}, "the file holds no optimiser_state_dict"
    state = optimiser_state["state"]
    groups = optimiser_state.get("param_groups") or [{}]
    group = groups[0]
    hyper = {"learning_rate": float(group.get("lr", DEFAULT_LEARNING_RATE))}
    if "eps" in group:
        hyper["epsilon"] = float(group["eps"])
    names = {frozenset(s) - {"step"} for s in state.values()}
    if not state:
        return None, None, None, hyper, "the optimizer state is empty"
    if names == {frozenset({"exp_avg", "exp_avg_sq"})}:
        kind, slots = "torch_adam", ("exp_avg", "exp_avg_sq")
        if "betas" in group:
            hyper["beta_1"], hyper["beta_2"] = (float(b) for b in group["betas"])
        if group.get("amsgrad") or group.get("weight_decay"):
            return None, None, None, hyper, "Adam with AMSGrad or weight decay"
    elif names == {frozenset({"square_avg"})}:
        kind, slots = "torch_rmsprop", ("square_avg",)
        if "alpha" in group:
            hyper["alpha"] = float(group["alpha"])
        if group.get("centered") or group.get("momentum") or group.get("weight_decay"):
            return None, None, None, hyper, "RMSprop with centring, momentum or weight decay"
    else:
        found = ", ".join(sorted({n for s in names for n in s}))
        return None, None, None, hyper, f"an optimizer with state {found} (not Adam)"
    indices = [int(i) for g in groups for i in g.get("params", [])]
    by_index = {int(i): np.shape(s[slots[0]]) for i, s in state.items()}
    for i in indices:
        by_index.setdefault(i, None)
    order = parameter_order(state_dict, {i: s for i, s in by_index.items() if s is not None},
                            count=len(indices) or None)
    if order is None:
        return kind, None, None, hyper, ("its parameters do not line up with the state "
                                         "dict's keys")
    key_index = {key: i for i, key in enumerate(order)}
    entries, _ = reference_table(model, shapes)
    converted = {}
    for entry in entries:
        if entry.path not in trainable:
            continue
        per_slot = []
        for slot in slots:
            arrays = []
            for key in entry.keys:
                values = state.get(key_index.get(key, -1), {}).get(slot)
                if values is None:  # never updated: zero moments, as PyTorch starts
                    values = np.zeros(np.shape(state_dict[key]), np.float32)
                arrays.append(np.asarray(values, np.float32))
            per_slot.append(np.asarray(entry.rule.moment(*arrays), np.float32))
        converted[entry.path] = tuple(per_slot)
    steps = [float(s["step"]) for s in state.values() if "step" in s]
    return kind, converted, int(max(steps)) if steps else None, hyper, None


# -- reading the file ------------------------------------------------------------------------

def _numpy(value):
    """Tensors (nested in dicts, lists, tuples) as NumPy arrays; other values unchanged."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_numpy(v) for v in value)
    return value


def _scalar(value, name):
    if value is None:
        return None
    try:
        return np.asarray(value).item()
    except (TypeError, ValueError):
        raise ConversionError(f"the checkpoint's {name} is not a number: {value!r}") from None


def read_checkpoint(path):
    """The reference's checkpoint file as {'model_state_dict': {key: array},
    'optimiser_state_dict': ..., 'beta', 'err_ema', 'iter_idx'} (NumPy values).

    Raises TorchMissingError (an ImportError naming the install command) without torch,
    ConversionError for a file that is not such a checkpoint."""
    try:
        import torch
    except ImportError:
        raise TorchMissingError(
            f"reading a PyTorch checkpoint needs torch: {INSTALL_TORCH}") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors alike
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConversionError(
            f"{path} is not a PyTorch checkpoint that loads safely with weights_only=True "
            f"({type(error).__name__}: {first[:200]})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path} holds a {type(data).__name__}, not a training "
                              "checkpoint (a dict with model_state_dict)")
    missing = [k for k in REQUIRED_ENTRIES if k not in data]
    if missing:
        raise ConversionError(f"{path} is not a training checkpoint of the reference: it "
                              f"lacks {', '.join(missing)} (has {_more(map(str, data), 6)})")
    states = data["model_state_dict"]
    if not isinstance(states, dict):
        raise ConversionError(f"{path}: model_state_dict is a {type(states).__name__}, "
                              "not a state dict")
    return {
        "model_state_dict": {str(k): _numpy(v) for k, v in states.items()},
        "optimiser_state_dict": _numpy(data.get("optimiser_state_dict")),
        "beta": _scalar(data["beta"], "beta"),
        "err_ema": _scalar(data["err_ema"], "err_ema"),
        "iter_idx": _scalar(data["iter_idx"], "iter_idx"),
    }


# -- the model and the run directory --------------------------------------------------------

def model_arguments(model, state_dict, image_size=None, num_slots=None, dataset=None,
                    configs_dir=None):
    """Constructor arguments of the genesis_tf model: the sizes from the flags (image size
    64 by default), K and the pixel standard deviations from the reference's ``std`` buffer
    (shape [1, 1, 1, 1, K]); GENESIS-V2's from genesis_v2_arguments."""
    if model == "genesis_v2":
        return genesis_v2_arguments(state_dict, image_size, num_slots, dataset, configs_dir)
    arguments = {"image_size": image_size or DEFAULT_IMAGE_SIZE}
    if model not in SLOT_MODELS:
        if num_slots not in (None, 1):
            raise ConversionError(f"--num_slots: {MODEL_CLASSES[model]} has no slots")
        return arguments
    std = state_dict.get("std")
    if std is not None:
        # float32 values as their shortest decimal (0.7, not 0.699999988079071)
        std = np.array([float(str(v)) for v in np.asarray(std, np.float32).reshape(-1)])
        if num_slots is not None and num_slots != std.size:
            raise ConversionError(f"--num_slots={num_slots}, but the checkpoint's key std "
                                  f"records K={std.size}; pass --num_slots={std.size}")
        num_slots = std.size
        if model == "monet":
            arguments["first_pixel_std"] = float(std[0])
            arguments["pixel_std"] = float(std[1] if std.size > 1 else std[0])
        else:
            if not np.allclose(std, std[0]):
                print(f"warning: std differs between slots ({std.tolist()}); "
                      f"{MODEL_CLASSES[model]} has one pixel_std, using {std[0]:.4g}",
                      file=sys.stderr)
            arguments["pixel_std"] = float(std[0])
    if num_slots is None:
        raise ConversionError("the checkpoint has no key std to tell K; pass --num_slots")
    if num_slots < 2:
        raise ConversionError(f"--num_slots must be >= 2, got {num_slots}")
    arguments["num_slots"] = int(num_slots)
    if model == "monet" and "pixel_std" not in arguments:
        arguments.update(pixel_std=0.7, first_pixel_std=0.7)  # the GENESIS comparison's
    return arguments


def genesis_v2_arguments(state_dict, image_size=None, num_slots=None, dataset=None,
                         configs_dir=None):
    """GenesisV2's constructor arguments. The image size follows from the encoder's depth
    (log2(S) − 1 down blocks: 4, 5, 6 at 32, 64, 128), the latent size from z_head, the
    prior's LSTM units from prior_lstm and semiconv from the gate's key. K is not in the
    checkpoint (no ``std``): --num_slots gives it, else the GENESIS-V2 experiment config
    that trains on --dataset (dataset_settings)."""
    blocks = sum(1 for k in state_dict if re.fullmatch(r"encoder\.down\.\d+\.0\.weight", k))
    size = 2 ** (blocks + 1) if blocks else None
    if image_size is not None and size is not None and image_size != size:
        raise ConversionError(f"--image_size={image_size}, but the checkpoint's encoder has "
                              f"{blocks} down blocks: a {size}x{size} model; pass "
                              f"--image_size={size} or leave it out")
    size = size or image_size
    if num_slots is None:
        if dataset is None:
            raise ConversionError("GENESIS-V2 checkpoints do not record K: pass --num_slots "
                                  f"({V2_SLOTS}) or --dataset")
        num_slots, dataset_size, path = dataset_settings(dataset, configs_dir)
        if size is not None and dataset_size != size:
            raise ConversionError(
                f"--dataset={dataset}: {os.path.basename(path)} trains GENESIS-V2 at "
                f"{dataset_size}x{dataset_size}, but the checkpoint is a {size}x{size} "
                "model; check --dataset or pass --num_slots")
        size = size or dataset_size
    if num_slots < 2:
        raise ConversionError(f"--num_slots must be >= 2, got {num_slots}")
    arguments = {"image_size": size or DEFAULT_IMAGE_SIZE, "num_slots": int(num_slots),
                 "semiconv": "att_process.colour_head.weight" not in state_dict}
    head = state_dict.get("z_head.3.weight")
    if np.ndim(head) == 2:  # Linear 2F -> 2F
        arguments["latent_size"] = int(np.shape(head)[0]) // 2
    recurrent = state_dict.get("prior_lstm.weight_hh_l0")
    if np.ndim(recurrent) == 2:  # (4·units, units)
        arguments["prior_lstm_units"] = int(np.shape(recurrent)[1])
    return arguments


def _gin_value(name, default=None):
    """A parsed binding's value (a %MACRO evaluated), or `default` when unbound."""
    import gin

    try:
        value = gin.query_parameter(name)
    except ValueError:
        return default
    if isinstance(value, gin.config.ConfigurableReference):
        value = value.scoped_configurable_fn()
    return value


def dataset_settings(dataset, configs_dir=None):
    """(K, image size, path) of the GENESIS-V2 experiment config (``*_genesis_v2.gin`` in
    `configs_dir`, by default the shipped gin configs) whose ``train.dataset`` is
    `dataset`, else one of the same dataset (the name before '/'). Clears gin's global
    configuration (the command has none of its own)."""
    import gin

    from genesis_tf.models import GenesisV2
    from genesis_tf.training import config

    folder = configs_dir or config.gin_configs_dir()
    default_slots = inspect.signature(GenesisV2).parameters["num_slots"].default
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, V2_CONFIGS))):
        gin.clear_config()
        try:
            config.parse([path])
            found[path] = (str(_gin_value("train.dataset")),
                           _gin_value("GenesisV2.num_slots", default_slots),
                           _gin_value("train.image_size"))
        except Exception as error:  # gin raises ValueError, SyntaxError, OSError, ...
            raise ConversionError(f"cannot read {path} to find K for --dataset={dataset} "
                                  f"({type(error).__name__}: {str(error).splitlines()[0]}); "
                                  "pass --num_slots") from None
        finally:
            gin.clear_config()
    matches = ([p for p, (d, _, _) in found.items() if d == dataset]
               or [p for p, (d, _, _) in found.items()
                   if d.split("/")[0] == dataset.split("/")[0]])
    if not matches:
        raise ConversionError(f"--dataset={dataset}: no GENESIS-V2 config "
                              f"({os.path.join(folder, V2_CONFIGS)}) trains on it, so K is "
                              f"unknown; pass --num_slots ({V2_SLOTS})")
    settings = {found[p][1:] for p in matches}
    if len(settings) > 1:
        raise ConversionError(f"--dataset={dataset}: the GENESIS-V2 configs "
                              f"{_more(os.path.basename(p) for p in matches)} disagree on "
                              "K or the image size; pass --num_slots")
    (num_slots, size), = settings
    return int(num_slots), int(size), matches[0]


def operative_config(description, source, step, bindings):
    """gin text for the converted run: train.model, train.image_size and the model's
    settings from `description`, then `bindings` ({gin name: value}, e.g.
    make_optimizer.learning_rate and train.dataset when known). gin parses them (so every
    name is checked against the registered configurables) and renders them with
    gin.config_str(), so that ``train --gin_file=<model_dir>/operative_config.gin``
    continues the run. Clears gin's global configuration (the command has none of its own).
    """
    import gin

    from genesis_tf.training import config  # noqa: F401  (registers the gin names)

    name = description["class_name"]
    settings = dict(description["config"])
    settings.pop("name", None)
    lines = [f"train.model = @{name}", f"train.image_size = {settings.pop('image_size')!r}",
             *(f"{name}.{key} = {value!r}" for key, value in sorted(settings.items())),
             *(f"{key} = {value!r}" for key, value in sorted(bindings.items()))]
    gin.clear_config()
    try:
        gin.parse_config(lines)
        text = gin.config_str()
    finally:
        gin.clear_config()
    return (f"# Converted by genesis_tf.convert_reference from {source} (reference step "
            f"{step}).\n# Continue training: python -m genesis_tf.train --gin_file=<this "
            "file> --model_dir=<this folder>\n\n" + text)


def _assign_weights(model, state_dict, variables):
    """Converts every state-dict tensor into its genesis_tf variable."""
    shapes = {path: tuple(v.shape) for path, v in variables.items()}
    arrays = convert_state_dict(model, state_dict, shapes)
    for path, variable in variables.items():
        variable.assign(arrays[path])
    return shapes


def _converted_optimizer(model, net, data, variables, shapes, step, log):
    """(optimizer built for net with the reference's moments, or afresh with a warning,
    its make_optimizer bindings, whether the state was mapped)."""
    from genesis_tf.training.optimizers import make_optimizer

    trainable = {path for path, v in variables.items() if v.trainable}
    kind, slots, opt_step, hyper, problem = convert_optimizer_state(
        model, data["model_state_dict"], data["optimiser_state_dict"], shapes, trainable)
    name = kind or "torch_adam"
    learning_rate = hyper.pop("learning_rate", DEFAULT_LEARNING_RATE)
    epsilon = hyper.pop("epsilon", 1e-8)
    opt = make_optimizer(name, learning_rate, epsilon=epsilon,
                         **(hyper if problem is None else {}))
    opt.build(net.trainable_variables)
    if problem is None:
        by_variable = {variables[p].path: p for p in trainable}
        for variable in net.trainable_variables:
            values = slots[by_variable[variable.path]]
            if name == "torch_adam":  # scaled to what its fused update reads
                opt.assign_torch_moments(variable, *values)
            else:
                (square_avg,) = values
                opt._velocities[opt._get_variable_index(variable)].assign(square_avg)
        opt.iterations.assign(opt_step if opt_step is not None else step)
    else:
        log(f"warning: the optimizer state is not mapped ({problem}); {name} "
            "starts afresh when training continues")
    bindings = {"make_optimizer.name": name, "make_optimizer.learning_rate": learning_rate,
                "make_optimizer.epsilon": epsilon}
    return opt, bindings, problem is None


def convert(checkpoint, model, image_size, model_dir, num_slots=None, dataset=None,
            log=print, data=None, configs_dir=None):
    """Reads the reference checkpoint (or takes `data`, read_checkpoint's result) and
    writes the genesis_tf run directory; returns {'checkpoint': path written, 'step',
    'beta', 'err_ema', 'optimizer' (None when reset), 'model'}. image_size None: the
    checkpoint's (GENESIS-V2), else 64; configs_dir: where dataset_settings looks."""
    data = read_checkpoint(checkpoint) if data is None else data
    arguments = model_arguments(model, data["model_state_dict"], image_size, num_slots,
                                dataset, configs_dir)
    image_size = arguments["image_size"]

    import tensorflow as tf

    from genesis_tf import runs
    from genesis_tf.geco import GECO
    from genesis_tf.models import MODELS, config_of
    from genesis_tf.training import state
    from genesis_tf.training import warm_start as warm_start_lib

    net = MODELS[MODEL_CLASSES[model]](**arguments).build_for_images()
    variables = warm_start_lib.weights_of(net)
    shapes = _assign_weights(model, data["model_state_dict"], variables)
    step = int(data["iter_idx"] or 0)
    opt, bindings, mapped = _converted_optimizer(model, net, data, variables, shapes, step,
                                                 log)
    beta = 1.0 if data["beta"] is None else float(data["beta"])
    err_ema = data["err_ema"]
    geco = GECO.for_image(image_size, image_size, beta_init=beta)
    if err_ema is not None:
        geco.err_ema.assign(float(err_ema))
        geco.initialised.assign(True)
    description = config_of(net)
    tf.io.gfile.makedirs(model_dir)
    runs.write_description(model_dir, description)
    runs.write_run_info(model_dir, dataset, None, image_size, model=description)
    with tf.io.gfile.GFile(os.path.join(model_dir, runs.OPERATIVE_CONFIG), "w") as f:
        f.write(operative_config(description, os.path.abspath(checkpoint), step, {
            **bindings, **({"train.dataset": dataset} if dataset else {})}))
    saver = state.checkpoint_of(net, opt, geco, state.step_variable(step))
    path = tf.train.CheckpointManager(saver, model_dir, max_to_keep=3).save(
        checkpoint_number=step)
    return {"checkpoint": path, "step": step, "beta": beta, "err_ema": err_ema,
            "optimizer": bindings["make_optimizer.name"] if mapped else None, "model": net}


# -- the command ---------------------------------------------------------------------------

@functools.cache  # once per process: absl refuses a flag defined twice
def define_flags():
    """The command's flags. run() defines them, not the import: this module is also a
    library, imported beside binaries that define --model_dir or --checkpoint."""
    flags.DEFINE_string("checkpoint", None, "The reference's .ckpt file.")
    flags.DEFINE_enum("model", None, sorted(MODEL_CLASSES), "The model the file holds.")
    flags.DEFINE_integer("image_size", None, "Image side the model was trained at "
                         "(default: genesis_v2's from its checkpoint, else 64).", lower_bound=1)
    flags.DEFINE_integer("num_slots", None, "K (default: from the checkpoint's std; for "
                         "genesis_v2, which does not record it, from --dataset's "
                         "gin_configs/*_genesis_v2.gin).")
    flags.DEFINE_string("model_dir", None, "The run directory to write (a new folder).")
    flags.DEFINE_string("dataset", None, "Recorded as the run's dataset, e.g. "
                        "multi_dsprites/colored.")
    flags.mark_flags_as_required(["checkpoint", "model", "model_dir"])


def check_arguments(checkpoint, model, model_dir, num_slots=None):
    """Raises ConversionError for a mistake in the flags (checked before torch and
    TensorFlow load)."""
    if not os.path.isfile(checkpoint):
        raise ConversionError(f"--checkpoint={checkpoint} is not a file")
    if num_slots is not None and model in SLOT_MODELS and num_slots < 2:
        raise ConversionError(f"--num_slots must be >= 2, got {num_slots}")
    if os.path.exists(model_dir):
        if not os.path.isdir(model_dir):
            raise ConversionError(f"--model_dir={model_dir} is a file; give a new folder")
        if any(os.path.exists(os.path.join(model_dir, name))
               for name in ("checkpoint", "model.json")):
            raise ConversionError(f"--model_dir={model_dir} already holds a run; convert "
                                  "into a new folder")


def check_buildable(model, arguments):
    """Raises ConversionError when genesis_tf cannot build the model with these arguments
    (an image size its architecture does not support)."""
    from genesis_tf.models import MODELS

    try:
        MODELS[MODEL_CLASSES[model]](**arguments)  # no variables yet: cheap
    except ValueError as error:
        raise ConversionError(f"cannot build {MODEL_CLASSES[model]} with these flags: "
                              f"{str(error).splitlines()[0]}") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    check_arguments(args.checkpoint, args.model, args.model_dir, args.num_slots)
    data = read_checkpoint(args.checkpoint)  # torch first: its errors need no TensorFlow
    arguments = model_arguments(args.model, data["model_state_dict"], args.image_size,
                                args.num_slots, args.dataset)
    cli.quiet_logging(cli.verbosity_requested(args))
    check_buildable(args.model, arguments)
    size = arguments["image_size"]
    result = convert(args.checkpoint, args.model, size, args.model_dir,
                     num_slots=arguments.get("num_slots"), dataset=args.dataset,
                     log=lambda text: print(text, file=sys.stderr, flush=True), data=data)
    net = result["model"]
    print(f"Wrote {result['checkpoint']}: {MODEL_CLASSES[args.model]} "
          f"(K={getattr(net, 'num_slots', 1)}, {size}x{size}), step "
          f"{result['step']}, GECO beta {result['beta']:.4g}, optimizer "
          f"{result['optimizer'] or 'reset'}.")
    print(f"Evaluate: python -m genesis_tf.evaluate --model_dir={args.model_dir}"
          + ("" if args.dataset else " --dataset=..."))
    return 0


def run():
    """Console-script entry point (genesis-convert-reference)."""
    define_flags()
    cli.run_main(main)


if __name__ == "__main__":
    run()
