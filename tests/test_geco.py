"""GECO: constants, the error EMA, and the direction and size of β's steps."""
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.geco import GECO


def test_reference_constants_for_64_and_128_pixels():
    g = GECO.for_image(64, 64)
    assert g.goal == pytest.approx(0.5655 * 64 * 64 * 3)
    assert g.step_size == pytest.approx(1e-5)
    assert GECO.for_image(128, 128).step_size == pytest.approx(1e-5 / 4)


def test_goal_step_size_and_initial_beta_can_be_changed():
    g = GECO.for_image(32, 32, goal_per_pixel=-0.65, step_size_scale=10.0, beta_init=0.25)
    assert g.goal == pytest.approx(-0.65 * 32 * 32 * 3)
    assert g.step_size == pytest.approx(10 * 1e-5 * 4)
    assert float(g.beta.numpy()) == 0.25


def test_first_update_sets_the_ema_then_it_averages():
    g = GECO(goal=100.0, step_size=1e-3, alpha=0.99)
    g.update(tf.constant(150.0))
    assert float(g.err_ema) == pytest.approx(150.0)
    g.update(tf.constant(50.0))
    assert float(g.err_ema) == pytest.approx(0.01 * 50.0 + 0.99 * 150.0)


def test_beta_falls_when_the_error_is_above_the_goal():
    g = GECO(goal=100.0, step_size=1e-3)
    beta = float(g.update(tf.constant(150.0)))
    # Constraint 100 − 150 = −50 < 0: no speed-up.
    assert beta == pytest.approx(np.exp(1e-3 * -50.0), rel=1e-6)
    assert beta < 1.0


def test_beta_rises_ten_times_faster_when_the_goal_is_met():
    g = GECO(goal=100.0, step_size=1e-3)
    beta = float(g.update(tf.constant(80.0)))
    assert beta == pytest.approx(np.exp(1e-3 * 20.0 * 10.0), rel=1e-6)
    assert beta > 1.0


def test_beta_is_clipped():
    g = GECO(goal=0.0, step_size=1.0, beta_min=1e-10)
    for _ in range(3):
        g.update(tf.constant(1e4))
    assert float(g.beta) == pytest.approx(1e-10)


def test_loss_does_not_differentiate_beta():
    g = GECO(goal=1.0, step_size=1.0, beta_init=2.0)
    err, kl = tf.Variable(3.0), tf.Variable(5.0)
    with tf.GradientTape() as tape:
        loss = g.loss(err, kl)
    grads = tape.gradient(loss, [err, kl, g.beta])
    assert float(loss) == pytest.approx(3.0 + 2.0 * 5.0)
    assert float(grads[0]) == 1.0 and float(grads[1]) == 2.0 and grads[2] is None


def test_state_is_checkpointed(tmp_path):
    g = GECO(goal=100.0, step_size=1e-3)
    g.update(tf.constant(120.0))
    path = tf.train.Checkpoint(geco=g).save(str(tmp_path / "ckpt"))
    restored = GECO(goal=100.0, step_size=1e-3)
    tf.train.Checkpoint(geco=restored).restore(path).assert_consumed()
    assert float(restored.beta) == float(g.beta)
    assert float(restored.err_ema) == pytest.approx(120.0)
    restored.update(tf.constant(120.0))  # initialised flag came back: EMA, not reset
    assert float(restored.err_ema) == pytest.approx(120.0)


def test_update_inside_tf_function_and_replica_context():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        g = GECO(goal=100.0, step_size=1e-3)

    @tf.function
    def step(err):
        ctx = tf.distribute.get_replica_context()
        mean_err = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, err)
        return g.update(mean_err)

    def per_replica_err(ctx):
        return tf.constant(80.0) + 40.0 * tf.cast(ctx.replica_id_in_sync_group, tf.float32)

    errs = strategy.experimental_distribute_values_from_function(per_replica_err)
    strategy.run(step, args=(errs,))
    # Mean of 80 and 120 is 100 = goal: β unchanged, EMA 100 on every replica.
    values = [float(v) for v in strategy.experimental_local_results(g.err_ema)]
    assert values == pytest.approx([100.0, 100.0])
    betas = [float(v) for v in strategy.experimental_local_results(g.beta)]
    assert betas == pytest.approx([1.0, 1.0])


def test_the_gin_factory_defaults_to_the_reference_and_takes_bindings():
    import gin

    from genesis_tf.geco import configured_geco

    default, reference = configured_geco(64, 64), GECO.for_image(64, 64)
    for name in ("goal", "step_size", "alpha", "speedup"):
        assert getattr(default, name) == getattr(reference, name), name
    assert float(default.beta.numpy()) == 1.0
    gin.clear_config()
    try:
        gin.parse_config(["GECO.alpha = 0.9", "GECO.speedup = 2.0", "GECO.beta_init = 0.5",
                          "GECO.goal_per_pixel = 0.25", "GECO.step_size_scale = 3.0"])
        bound = configured_geco(32, 32)
    finally:
        gin.clear_config()
    assert bound.alpha == 0.9 and bound.speedup == 2.0 and float(bound.beta.numpy()) == 0.5
    assert bound.goal == pytest.approx(0.25 * 32 * 32 * 3)
    assert bound.step_size == pytest.approx(3.0 * 1e-5 * 4)
