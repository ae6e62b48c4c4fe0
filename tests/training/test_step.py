"""The training step's two objectives: GECO, and fixed KL weights (the MONet paper's)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.geco import GECO
from genesis_tf.models import Genesis
from genesis_tf.training import ConfigurationError, make_train_step, train
from tests.helpers.training import parse

SIZE, BATCH, LR = 32, 2, 0.1
WEIGHTS = {"kl/m": 0.25, "kl/l": 2.0}


def _model_and_images():
    model = Genesis(image_size=SIZE, num_slots=3).build_for_images()
    images = tf.random.stateless_uniform([BATCH, SIZE, SIZE, 3], seed=[3, 1])
    return model, images


def test_fixed_kl_weights_step_descends_err_plus_weighted_kls():
    model, images = _model_and_images()
    variables = model.trainable_variables
    # The gradient of the objective, computed here independently of make_train_step.
    with tf.GradientTape() as tape:
        terms = model.loss_terms(images, model(images, training=True, deterministic=True))
        objective = tf.reduce_sum(terms["err"]) + sum(
            weight * tf.reduce_sum(terms[name]) for name, weight in WEIGHTS.items())
        objective = objective / BATCH
    expected = [g.numpy() for g in tape.gradient(objective, variables)]
    before = [v.numpy() for v in variables]

    geco = GECO.for_image(SIZE, SIZE)
    optimizer = keras.optimizers.SGD(LR)
    optimizer.build(variables)
    step = make_train_step(model, optimizer, geco, BATCH, deterministic=True,
                           kl_weights=WEIGHTS)
    means = tf.function(step)(images)
    assert sorted(means) == ["err", "kl/l", "kl/m"]
    moved = 0
    for variable, start, gradient in zip(variables, before, expected, strict=True):
        np.testing.assert_allclose(start - variable.numpy(), LR * gradient, rtol=1e-3,
                                   atol=1e-6, err_msg=variable.path)
        moved += np.abs(gradient).max() > 0
    assert moved > len(variables) // 2
    # GECO is not part of this objective: its state stays as initialised.
    assert float(geco.beta.numpy()) == 1.0 and not bool(geco.initialised.numpy())


def test_kl_weights_must_name_every_kl_term(tmp_path, clean_gin):
    parse(bindings=["train.kl_weights = {'kl/m': 0.5}"])
    with pytest.raises(ConfigurationError, match=r"one weight for each KL term of Genesis, "
                                                 r"\['kl/l', 'kl/m'\]"):
        train(str(tmp_path / "run"), num_steps=1)


def test_a_fixed_weight_run_trains_and_reports_no_beta(tmp_path, clean_gin, capsys):
    parse(bindings=["train.kl_weights = {'kl/m': 0.5, 'kl/l': 0.5}",
                    "make_optimizer.name = 'torch_rmsprop'", "train.log_every_seconds = 0"])
    result = train(str(tmp_path / "run"), num_steps=2)
    assert result.step == 2
    assert "beta" not in result.metrics and np.isfinite(result.metrics["elbo"])
    assert "beta" not in capsys.readouterr().out
