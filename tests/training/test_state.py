"""The training state builder: its checkpoint layout, restore, warm start and saving."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf import runs
from genesis_tf.geco import GECO
from genesis_tf.models import Genesis
from genesis_tf.training import CheckpointMismatchError, TrainState
from genesis_tf.training.optimizers import make_optimizer


def _genesis(image_size, mask_latent_size=64):
    return Genesis(image_size=image_size, num_slots=3, mask_latent_size=mask_latent_size)


def _old_layout_checkpoint(directory, step=11, mask_latent_size=64):
    """A checkpoint as train() wrote it before the state builder existed: a plain
    tf.train.Checkpoint(model=, optimizer=, geco=, step=) numbered by step."""
    net = _genesis(32, mask_latent_size).build_for_images()
    for variable in net.trainable_variables:  # values a fresh model cannot have
        variable.assign(tf.fill(variable.shape, 0.125))
    opt = make_optimizer("torch_adam", 0.5)  # not the configured rate: that one wins
    opt.build(net.trainable_variables)
    opt.iterations.assign(step)
    geco = GECO.for_image(32, 32, beta_init=0.37)
    geco.err_ema.assign(2500.0)
    geco.initialised.assign(True)
    saver = tf.train.Checkpoint(model=net, optimizer=opt, geco=geco,
                                step=tf.Variable(step, dtype=tf.int64))
    return tf.train.CheckpointManager(saver, str(directory), max_to_keep=3).save(
        checkpoint_number=step)


def test_a_checkpoint_of_the_old_layout_restores_through_the_builder(tmp_path):
    path = _old_layout_checkpoint(tmp_path)
    state = TrainState.build(_genesis, 32, tf.distribute.get_strategy())
    assert state.restore_or_initialize(str(tmp_path)) == path
    assert int(state.step.numpy()) == 11 and int(state.optimizer.iterations.numpy()) == 11
    assert float(state.optimizer.learning_rate.numpy()) == pytest.approx(1e-4)
    assert float(state.geco.beta.numpy()) == pytest.approx(0.37)
    assert float(state.geco.err_ema.numpy()) == 2500.0 and bool(state.geco.initialised)
    for variable in state.model.trainable_variables:
        np.testing.assert_array_equal(variable.numpy(), 0.125, err_msg=variable.path)
    # The builder writes the same layout: the old reader of training facts still reads it.
    manager = state.manager(str(tmp_path / "new"), max_to_keep=1)
    facts = runs.training_state(manager.save(checkpoint_number=11))
    assert facts == {"step": 11, "geco_beta": pytest.approx(0.37), "geco_err_ema": 2500.0}


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    _old_layout_checkpoint(tmp_path, mask_latent_size=32)  # other weight shapes
    state = TrainState.build(_genesis, 32, tf.distribute.get_strategy())
    with pytest.raises(CheckpointMismatchError, match="does not fit the configured model"):
        state.restore_or_initialize(str(tmp_path))


def test_without_a_checkpoint_init_fn_runs_and_the_warm_start_sets_the_state(tmp_path):
    from genesis_tf.training import warm_start

    source = _genesis(32).build_for_images()
    warm_start.save(source, str(tmp_path / "w.npz"), step=7, beta=0.5, err_ema=3.0)
    state = TrainState.build(_genesis, 32, tf.distribute.get_strategy())
    record = {}
    init_fn = state.warm_start_fn(str(tmp_path / "w.npz"), record)
    assert state.restore_or_initialize(str(tmp_path / "run"), init_fn=init_fn) is None
    assert record["step"] == 7 and int(state.step.numpy()) == 7
    assert float(state.geco.beta.numpy()) == 0.5 and bool(state.geco.initialised)
    np.testing.assert_allclose(state.model.trainable_variables[0].numpy(),
                               source.trainable_variables[0].numpy(), rtol=1e-3, atol=1e-4)
    assert int(state.optimizer.iterations.numpy()) == 0  # a fresh optimizer


def test_the_manager_saves_every_interval_and_always_when_asked(tmp_path):
    state = TrainState.build(_genesis, 32, tf.distribute.get_strategy())
    manager = state.manager(str(tmp_path), max_to_keep=10, checkpoint_every=3)
    saved = []
    for step in range(1, 8):
        state.step.assign(step)
        saved.append(manager.save(checkpoint_number=step, check_interval=True))
    assert [s is not None for s in saved] == [False, False, True, False, False, True, False]
    assert manager.save(checkpoint_number=7, check_interval=False).endswith("ckpt-7")
    assert manager.save(checkpoint_number=7, check_interval=False) is None  # already saved
