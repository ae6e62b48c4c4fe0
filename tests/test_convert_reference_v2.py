"""genesis_tf.tools.convert_reference --model=genesis_v2: the authors' GENESIS-V2 checkpoints.

The reference is stood in for by tests/helpers/torch_genesis_v2.py, a PyTorch GENESIS-V2
written from GENESIS_V2.md with the reference's state-dict keys. Its state dict is checked
against the spec's table (§4), converted, and the converted genesis_tf run must compute
what the torch model computes on the same image and the same IC-SBP draw.
"""
import copy
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

torch = pytest.importorskip("torch", reason="pip install -e '.[torch]' (torch CPU)")

from genesis_tf import cli, runs  # noqa: E402
from genesis_tf.models import MODELS, config_of  # noqa: E402
from genesis_tf.tools import convert_reference as cr  # noqa: E402
from genesis_tf.training import warm_start as warm_start_lib  # noqa: E402
from tests.helpers.torch_genesis_v2 import TorchGenesisV2, randomise  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

# -- GENESIS_V2.md §4: the reference's keys and PyTorch shapes -------------------------------

# (out, in) of the U-Net's 3×3 convs, down then up; §4 lists 64 and 128, §1.1 the down path
# at 32 (its up path follows the skips: previous + skip channels in).
UNET = {
    32: ([(64, 3), (128, 64), (128, 128), (128, 128)],
         [(128, 256), (128, 256), (64, 256), (64, 128)]),
    64: ([(64, 3), (64, 64), (128, 64), (128, 128), (128, 128)],
         [(128, 256), (128, 256), (64, 256), (64, 128), (64, 128)]),
    128: ([(64, 3), (64, 64), (64, 64), (128, 64), (128, 128), (128, 128)],
          [(128, 256), (128, 256), (64, 256), (64, 128), (64, 128), (64, 128)]),
}
KEY_COUNTS = {32: 72, 64: 78, 128: 84}
# Measured on the reference (§4); the Keras model has one LSTM bias for two: 1,024 fewer.
PARAMETERS = {32: 2_618_574, 64: 2_729_422, 128: 2_840_270}


def spec_shapes(size):
    """{key: shape} of the reference's state dict at size×size (§4's table)."""
    down, up = UNET[size]
    shapes = {}
    for path, blocks in (("down", down), ("up", up)):
        for i, (out, inp) in enumerate(blocks):
            shapes.update({f"encoder.{path}.{i}.0.weight": (out, inp, 3, 3),
                           f"encoder.{path}.{i}.1.weight": (out,),
                           f"encoder.{path}.{i}.1.bias": (out,)})
    shapes.update({
        "encoder.mlp.1.weight": (128, 2048), "encoder.mlp.1.bias": (128,),
        "encoder.mlp.3.weight": (128, 128), "encoder.mlp.3.bias": (128,),
        "encoder.mlp.5.weight": (2048, 128), "encoder.mlp.5.bias": (2048,),
        "att_process.log_sigma": (),
        "att_process.colour_head.conv.weight": (8, 64, 1, 1),
        "att_process.colour_head.conv.bias": (8,), "att_process.colour_head.gate.gate": (),
        "seg_head.0.weight": (64, 64, 3, 3), "seg_head.1.weight": (64,),
        "seg_head.1.bias": (64,),
        "feat_head.0.0.weight": (64, 64, 3, 3), "feat_head.0.1.weight": (64,),
        "feat_head.0.1.bias": (64,), "feat_head.1.weight": (128, 64, 1, 1),
        "feat_head.1.bias": (128,),
        "z_head.0.weight": (128,), "z_head.0.bias": (128,), "z_head.1.weight": (128, 128),
        "z_head.1.bias": (128,), "z_head.3.weight": (128, 128), "z_head.3.bias": (128,),
        "decoder_module.13.weight": (4, 64, 1, 1), "decoder_module.13.bias": (4,),
        "prior_lstm.weight_ih_l0": (1024, 64), "prior_lstm.weight_hh_l0": (1024, 256),
        "prior_lstm.bias_ih_l0": (1024,), "prior_lstm.bias_hh_l0": (1024,),
        "prior_linear.weight": (128, 256), "prior_linear.bias": (128,),
    })
    for i, conv in enumerate((1, 4, 7, 10)):
        shapes.update({f"decoder_module.{conv}.weight": (66 if i == 0 else 64, 64, 5, 5),
                       f"decoder_module.{conv}.bias": (64,),
                       f"decoder_module.{conv + 1}.weight": (64,),
                       f"decoder_module.{conv + 1}.bias": (64,)})
    return shapes


def torch_model(size, num_slots, seed=0):
    """The stand-in reference with PyTorch's initialisation from `seed`, then randomised."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return randomise(TorchGenesisV2(size, num_slots), seed=seed + 1)


def numpy_state(model):
    return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def keras_shapes(net):
    return {path: tuple(v.shape) for path, v in warm_start_lib.weights_of(net).items()}


@pytest.fixture(scope="module")
def keras_models():
    """GenesisV2 per image size (built once; K does not change the variables)."""
    return {size: MODELS["GenesisV2"](image_size=size, num_slots=3).build_for_images()
            for size in (32, 64, 128)}


# -- (a) the keys ----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64, 128])
def test_the_stand_ins_state_dict_is_the_specs(size):
    state = TorchGenesisV2(size, 4).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == spec_shapes(size)
    assert len(state) == KEY_COUNTS[size]
    assert sum(v.numel() for v in state.values()) == PARAMETERS[size]
    assert {k for k, v in state.items() if v.dtype != torch.float32} == {
        "att_process.log_sigma"}
    assert state["att_process.log_sigma"].dtype == torch.float64


@pytest.mark.parametrize("size", [32, 64, 128])
def test_every_key_fills_one_variable(size, keras_models):
    state = numpy_state(torch_model(size, 4, seed=size))
    arguments = cr.model_arguments("genesis_v2", state, None, 4)
    assert arguments == {"image_size": size, "num_slots": 4, "semiconv": True,
                         "latent_size": 64, "prior_lstm_units": 256}
    shapes = keras_shapes(keras_models[size])
    assert cr.expected_torch_shapes("genesis_v2", shapes) == spec_shapes(size)
    arrays = cr.convert_state_dict("genesis_v2", state, shapes)
    assert {p: a.shape for p, a in arrays.items()} == shapes  # every variable, its shape
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert sum(a.size for a in arrays.values()) == PARAMETERS[size] - 1024
    np.testing.assert_allclose(arrays["ic_sbp/log_sigma"], state["att_process.log_sigma"],
                               rtol=1e-7)


def test_missing_extra_and_mis_shaped_keys_are_named_and_semiconv_off_converts(keras_models):
    shapes = keras_shapes(keras_models[32])
    state = numpy_state(torch_model(32, 4))
    missing = dict(state)
    del missing["decoder_module.8.bias"]
    with pytest.raises(cr.ConversionError, match=r"missing key decoder_module\.8\.bias"):
        cr.convert_state_dict("genesis_v2", missing, shapes)
    extra = {**state, "att_process.colour_head.extra": np.zeros(3, np.float32)}
    with pytest.raises(cr.ConversionError, match=r"unexpected key att_process\.colour"):
        cr.convert_state_dict("genesis_v2", extra, shapes)
    wrong = {**state, "decoder_module.1.weight": np.zeros((64, 64, 5, 5), np.float32)}
    with pytest.raises(cr.ConversionError, match=r"key decoder_module\.1\.weight has shape "
                       r"\(64, 64, 5, 5\).*needs \(66, 64, 5, 5\)"):
        cr.convert_state_dict("genesis_v2", wrong, shapes)
    with pytest.raises(cr.ConversionError, match=r"missing key encoder\.down\.4\.0\.weight"):
        cr.convert_state_dict("genesis_v2", state, keras_shapes(keras_models[64]))
    # semiconv=False: the colour head is the plain 1×1 conv (no gate, no .conv level).
    plain = {k.replace("colour_head.conv.", "colour_head."): v for k, v in state.items()
             if k != "att_process.colour_head.gate.gate"}
    arguments = cr.model_arguments("genesis_v2", plain, None, 4)
    assert arguments["semiconv"] is False
    net = MODELS["GenesisV2"](**arguments).build_for_images()
    arrays = cr.convert_state_dict("genesis_v2", plain, keras_shapes(net))
    np.testing.assert_array_equal(arrays["colour_head/conv/bias"],
                                  state["att_process.colour_head.conv.bias"])


# -- (b) the converted run computes what the reference computes ------------------------------

def save_reference(path, model, images, uniform, iter_idx, adam_step=True):
    """torch.save in the reference's checkpoint layout, after one real Adam step on
    err + kl (so that the file holds torch's optimizer state) unless not `adam_step`.
    Returns the optimizer state."""
    optimiser = {}
    if adam_step:
        adam = torch.optim.Adam(model.parameters(), lr=1e-4)
        noise = torch.randn(images.shape[0], model.num_slots, 64)
        out = model(images, uniform, noise=noise)
        (out["err"] + out["kl"]).mean().backward()
        adam.step()
        model.zero_grad()
        optimiser = adam.state_dict()
    torch.save({"model_state_dict": model.state_dict(), "optimiser_state_dict": optimiser,
                "beta": torch.tensor(0.42), "err_ema": torch.tensor(1800.0),
                "iter_idx": iter_idx}, path)
    return optimiser


def inputs(size, batch=2, seed=3):
    """(images [B, 3, S, S] in [0, 1], uniform draw [B, 1, S, S]) as torch tensors."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, size, size, generator=generator),
            torch.rand(batch, 1, size, size, generator=generator))


def differences(net, model, images, uniform):
    """{quantity: max |genesis_tf − torch|} on one forward pass with posterior means (err
    relative), after checking that both sides give the same shapes."""
    with torch.no_grad():
        ref = model(images, uniform)
    nhwc = tf.constant(images.permute(0, 2, 3, 1).numpy())
    out = net(nhwc, deterministic=True, uniform=tf.constant(uniform[:, 0].numpy()))
    terms = net.loss_terms(nhwc, out)
    pairs = {
        "ic_sbp_masks": (tf.exp(out.ic_sbp_log_masks),
                         ref["ic_sbp_log_masks"].exp().permute(0, 1, 3, 4, 2)),
        "ic_sbp_log_masks": (out.ic_sbp_log_masks,
                             ref["ic_sbp_log_masks"].permute(0, 1, 3, 4, 2)),
        "decoded_masks": (tf.exp(out.log_masks), ref["log_masks"].exp().permute(0, 1, 3, 4, 2)),
        "decoded_log_masks": (out.log_masks, ref["log_masks"].permute(0, 1, 3, 4, 2)),
        "recon": (out.recon, ref["recon"].permute(0, 2, 3, 1)),
        "mu": (out.mask_mean, ref["mu"]), "sigma": (out.mask_scale, ref["sigma"]),
        "kl": (terms["kl/l"], ref["kl"]),
    }
    result = {}
    for name, (got, expected) in pairs.items():
        got, expected = np.asarray(got), expected.numpy()
        assert got.shape == expected.shape, name
        result[name] = float(np.max(np.abs(got - expected)))
    err = ref["err"].numpy()
    result["err_relative"] = float(np.max(np.abs(np.asarray(terms["err"]) - err) / err))
    return result


# Measured at 32×32, K=4 and 64×64, K=5: ≤ 2.1e-5 for the IC-SBP log masks (values down to
# log 1e-4), ≤ 2e-6 for the decoded log masks, ≤ 5e-7 for recon, μ, σ, ≤ 1e-5 for kl (tens
# of nats), ≤ 1.2e-7 relative for err.
TOLERANCES = {"ic_sbp_masks": 1e-5, "ic_sbp_log_masks": 1e-4, "decoded_masks": 1e-5,
              "decoded_log_masks": 1e-5, "recon": 1e-5, "mu": 1e-5, "sigma": 1e-5,
              "kl": 1e-4, "err_relative": 1e-5}


def assert_equal_forward(net, model, images, uniform):
    found = differences(net, model, images, uniform)
    print(f"{model.image_size}x{model.image_size}: max differences {found}")
    too_far = {k: v for k, v in found.items() if not v <= TOLERANCES[k]}
    assert not too_far, found


@pytest.fixture(scope="module")
def converted_v2(tmp_path_factory):
    """A 32×32, K=4 stand-in saved as the reference saves checkpoints and converted by
    `python -m genesis_tf.convert_reference` in a fresh process (image size from the
    checkpoint, K from the flag)."""
    folder = tmp_path_factory.mktemp("v2")
    model = torch_model(32, 4, seed=7)
    images, uniform = inputs(32)
    source = folder / "model.ckpt-FINAL"
    adam = save_reference(source, model, images, uniform, iter_idx=2468)
    out = folder / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "genesis_tf.convert_reference", f"--checkpoint={source}",
         "--model=genesis_v2", "--num_slots=4", f"--model_dir={out}",
         "--dataset=tetrominoes"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return {"model": model, "source": source, "run": out, "adam": adam, "stdout": result.stdout,
            "images": images, "uniform": uniform}


def test_converted_run_computes_what_the_reference_computes(converted_v2):
    model = converted_v2["model"]
    assert "GenesisV2 (K=4, 32x32), step 2468" in converted_v2["stdout"]
    net = runs.restore(str(converted_v2["run"]))  # what evaluate and visualise restore
    assert type(net).__name__ == "GenesisV2" and (net.image_size, net.num_slots) == (32, 4)
    assert runs.read_run_info(str(converted_v2["run"]))["dataset"] == "tetrominoes"
    # The colour conv matters: at gate 0 the IC-SBP masks would be others.
    images, uniform = converted_v2["images"], converted_v2["uniform"]
    gate = model.att_process.colour_head.gate.gate
    with torch.no_grad():
        gated = model(images, uniform)["ic_sbp_log_masks"].exp()
        value = gate.item()
        gate.fill_(0.0)
        ungated = model(images, uniform)["ic_sbp_log_masks"].exp()
        gate.fill_(value)
    assert float((gated - ungated).abs().max()) > 0.1
    assert_equal_forward(net, model, images, uniform)
    # Other images and draws than the one the Adam step saw.
    assert_equal_forward(net, model, *inputs(32, batch=3, seed=11))


# Reference parameter -> the converted model's variable holding it unchanged (vectors and
# scalars: no layout rule in between), one in every part of the gradient's path.
GRADIENT_PAIRS = {
    "encoder.down.0.1.weight": lambda n: n.encoder.down[0].norm.gamma,
    "encoder.up.3.1.bias": lambda n: n.encoder.up[3].norm.beta,
    "encoder.mlp.3.bias": lambda n: n.encoder.mlp[1].bias,
    "seg_head.1.weight": lambda n: n.seg_head.norm.gamma,
    # (Not the colour conv's bias: shifting every embedding alike changes no distance, so
    # its gradient is 0 up to rounding.)
    "att_process.colour_head.gate.gate": lambda n: n.colour_head.gate,
    "att_process.log_sigma": lambda n: n.ic_sbp.log_sigma,
    "feat_head.1.bias": lambda n: n.feat_out.bias,
    "z_head.0.weight": lambda n: n.posterior.norm.gamma,
    "z_head.3.bias": lambda n: n.posterior.head.bias,
    "decoder_module.2.weight": lambda n: n.decoder.norms[0].gamma,
    "decoder_module.13.bias": lambda n: n.decoder.out.bias,
    "prior_linear.bias": lambda n: n.prior.head.bias,
}


def test_gradients_equal_the_references(tmp_path):
    """The training signal, not only the forward pass: d(err + kl)/dθ on the same images
    and draw, posterior means on both sides, equals torch's autograd of the same model in
    float64 (measured: ≤ 5e-6 relative to each gradient's largest entry). Not torch's
    float32 gradients: on one thread they are up to 3.8e-3 off its own float64 ones (on
    two, 2e-6), so the test failed on a one-core machine."""
    model = torch_model(32, 4, seed=9)
    images, uniform = inputs(32, seed=5)
    save_reference(tmp_path / "model.ckpt-FINAL", model, images, uniform, iter_idx=1,
                   adam_step=False)
    cr.convert(str(tmp_path / "model.ckpt-FINAL"), "genesis_v2", None, str(tmp_path / "run"),
               num_slots=4, log=lambda *_: None)
    net = runs.restore(str(tmp_path / "run"))
    model64 = copy.deepcopy(model).double()
    ref = model64(images.double(), uniform.double())
    (ref["err"] + ref["kl"]).mean().backward()
    expected = {name: p.grad.numpy() for name, p in model64.named_parameters()}
    nhwc = tf.constant(images.permute(0, 2, 3, 1).numpy())
    variables = {name: pick(net) for name, pick in GRADIENT_PAIRS.items()}
    with tf.GradientTape() as tape:
        out = net(nhwc, deterministic=True, uniform=tf.constant(uniform[:, 0].numpy()))
        terms = net.loss_terms(nhwc, out)
        loss = tf.reduce_mean(terms["err"] + terms["kl/l"])
    grads = tape.gradient(loss, list(variables.values()))
    for name, got in zip(variables, grads, strict=True):
        scale = max(float(np.abs(expected[name]).max()), 1e-6)
        assert float(np.abs(got.numpy() - expected[name]).max()) <= 1e-4 * scale, name


def test_converted_run_continues_training_with_the_references_state(converted_v2):
    import gin

    from genesis_tf.training import TrainState, config

    out = converted_v2["run"]
    gin.clear_config()
    try:
        config.parse([str(out / "operative_config.gin")])
        factory = gin.query_parameter("train.model").scoped_configurable_fn
        # What train() builds and restores (genesis_tf/training/state.py).
        state = TrainState.build(factory, gin.query_parameter("train.image_size"),
                                 tf.distribute.get_strategy())
    finally:
        gin.clear_config()
    assert runs.description_changes(runs.read_description(str(out)),
                                    config_of(state.model)) == []
    assert state.restore_or_initialize(str(out)).endswith("ckpt-2468")
    assert int(state.step.numpy()) == 2468 and int(state.optimizer.iterations.numpy()) == 1
    assert float(state.geco.beta.numpy()) == pytest.approx(0.42)
    assert float(state.geco.err_ema.numpy()) == pytest.approx(1800.0)
    # Adam's first moments in the Keras layouts (parameters in state-dict order).
    keys = list(converted_v2["model"].state_dict())
    moments = {keys[i]: s["exp_avg"].numpy() for i, s in converted_v2["adam"]["state"].items()}
    weights = warm_start_lib.weights_of(state.model)
    optimizer = getattr(state.optimizer, "inner_optimizer", state.optimizer)

    def first_moment(path):  # in PyTorch's terms (the slot holds it times 1 + 2.4e-7)
        return optimizer.torch_moments(weights[path])[0].astype(np.float32)

    np.testing.assert_allclose(first_moment("ic_sbp/log_sigma"),
                               moments["att_process.log_sigma"], rtol=1e-6)
    np.testing.assert_array_equal(first_moment("colour_head/gate"),
                                  moments["att_process.colour_head.gate.gate"])
    np.testing.assert_allclose(first_moment("prior/lstm/lstm_cell/bias"),
                               (moments["prior_lstm.bias_ih_l0"]
                                + moments["prior_lstm.bias_hh_l0"]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(  # the last MLP layer's bias: (c, h, w) -> (h, w, c)
        first_moment("encoder/mlp_2/bias"),
        moments["encoder.mlp.5.bias"].reshape(128, 4, 4).transpose(1, 2, 0).reshape(-1))
    np.testing.assert_array_equal(  # transposed conv (in, out, kh, kw) -> (kh, kw, out, in)
        first_moment("decoder/conv_2/kernel"),
        moments["decoder_module.7.weight"].transpose(2, 3, 1, 0))


GIN_V2 = """train.model = @GenesisV2
train.image_size = 64
train.dataset = 'toy_scenes/train'
GenesisV2.num_slots = 5
"""


def test_64x64_with_k_from_the_datasets_config(tmp_path):
    """In process, K from the dataset's GENESIS-V2 config (a minimal one in tmp_path
    standing in for gin_configs/<dataset>_genesis_v2.gin), the size from the checkpoint."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "toy_genesis_v2.gin").write_text(GIN_V2)
    (configs / "toy_genesis.gin").write_text(GIN_V2.replace("GenesisV2", "Genesis")
                                             .replace("= 5", "= 9"))  # not a V2 config
    model = torch_model(64, 5, seed=5)
    images, uniform = inputs(64)
    source = tmp_path / "model.ckpt-FINAL"
    save_reference(source, model, images, uniform, iter_idx=10, adam_step=False)
    # Another split of the same dataset finds the config too.
    logged = []
    result = cr.convert(str(source), "genesis_v2", None, str(tmp_path / "run"),
                        dataset="toy_scenes/test", configs_dir=str(configs),
                        log=logged.append)
    assert (result["model"].image_size, result["model"].num_slots) == (64, 5)
    assert result["optimizer"] is None and "holds no optimiser_state_dict" in logged[0]
    net = runs.restore(str(tmp_path / "run"))
    assert_equal_forward(net, model, images, uniform)


# -- (c) mistakes ----------------------------------------------------------------------------

def _command(argv, capsys):
    """The command as genesis-convert-reference runs it, in this process; (exit code,
    stderr)."""
    from absl import flags
    from absl.testing import flagsaver

    cr.define_flags()
    with flagsaver.flagsaver():
        flags.FLAGS(["genesis-convert-reference", *argv])
        code = cli._reporting_user_errors(cr.main, ["genesis-convert-reference"])
    return code, capsys.readouterr().err


def test_k_is_asked_for_in_one_line(converted_v2, tmp_path, capsys):
    source = f"--checkpoint={converted_v2['source']}"
    run = f"--model_dir={tmp_path / 'run'}"
    code, err = _command([source, "--model=genesis_v2", run], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: GENESIS-V2 checkpoints do not record K: pass --num_slots")
    assert "or --dataset" in err
    code, err = _command([source, "--model=genesis_v2", run, "--dataset=no_such_dataset"],
                         capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--dataset=no_such_dataset: no GENESIS-V2 config" in err and "--num_slots" in err
    code, err = _command([source, "--model=genesis_v2", run, "--num_slots=4",
                          "--image_size=64"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "4 down blocks: a 32x32 model; pass --image_size=32" in err
    assert not (tmp_path / "run").exists()


def test_a_dataset_config_of_another_size_is_refused(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "toy_genesis_v2.gin").write_text(GIN_V2)  # 64×64
    state = numpy_state(TorchGenesisV2(32, 4))
    with pytest.raises(cr.ConversionError, match=r"toy_genesis_v2\.gin trains GENESIS-V2 at "
                       r"64x64, but the checkpoint is a 32x32 model"):
        cr.model_arguments("genesis_v2", state, dataset="toy_scenes/train",
                           configs_dir=str(configs))
    assert cr.model_arguments("genesis_v2", state, num_slots=6, dataset="toy_scenes/train",
                              configs_dir=str(configs))["num_slots"] == 6
