"""TorchAdam follows PyTorch's Adam rule (ε added after bias correction) step by step.

Reference: PyTorch's update written in NumPy (float64) below. The toy problem has a
least-squares part (gradients ~0.1, where PyTorch's and Keras' Adam agree) and a
parameter ``q`` whose gradient is exactly 1e-9, where they do not: PyTorch moves it by
lr·m̂/(√v̂ + ε) ≈ lr/11 at step 1, Keras by ≈ lr·0.003.
"""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from genesis_tf.training.optimizers import TorchAdam, TorchRMSprop, make_optimizer

LR = 1e-3
EPS = 1e-8
TINY = 1e-9
STEPS = 3
X = np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [-0.2, 0.8, 1.1], [0.9, -0.4, 0.6]])
Y = np.array([1.0, -0.5, 0.3, 2.0])
INITIAL = {"w": np.array([0.1, -0.2, 0.3]), "b": np.array([0.05]), "q": np.zeros(2)}
NAMES = ("w", "b", "q")


def toy_gradients(params, x=X, y=Y):
    """Gradient of mean_i 0.5·(x_i·w + b − y_i)² + 1e-9·Σq, in float64."""
    residual = x @ params["w"] + params["b"][0] - y
    return {"w": x.T @ residual / len(y), "b": np.array([residual.mean()]),
            "q": np.full(2, TINY)}


def torch_adam_step(params, m, v, t, lr=LR, beta_1=0.9, beta_2=0.999, eps=EPS):
    """PyTorch's Adam update number t in NumPy: updates the dicts params, m and v."""
    grads = toy_gradients(params)
    for k in NAMES:
        m[k] = beta_1 * m[k] + (1 - beta_1) * grads[k]
        v[k] = beta_2 * v[k] + (1 - beta_2) * grads[k] ** 2
        m_hat = m[k] / (1 - beta_1 ** t)
        v_hat = v[k] / (1 - beta_2 ** t)
        params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)


def torch_adam_reference(steps=STEPS):
    """PyTorch's Adam in NumPy: the parameters after each of ``steps`` updates."""
    params = {k: v.copy() for k, v in INITIAL.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    history = []
    for t in range(1, steps + 1):
        torch_adam_step(params, m, v, t)
        history.append({k: p.copy() for k, p in params.items()})
    return history


def make_variables(values=None):
    values = INITIAL if values is None else values
    return [keras.Variable(np.asarray(values[k], np.float32), name=k) for k in NAMES]


def toy_loss(variables, x, y, global_batch):
    """Σ over the examples given of the per-example loss, / the global batch size."""
    w, b, q = (v.value for v in variables)
    residual = tf.linalg.matvec(x, w) + b[0] - y
    per_example = 0.5 * tf.square(residual) + TINY * tf.reduce_sum(q)
    return tf.reduce_sum(per_example) / global_batch


def make_step(optimizer, variables, loss_scale=False):
    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = toy_loss(variables, x, y, len(Y))
            if loss_scale:
                loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, [v.value for v in variables])
        optimizer.apply(grads, variables)

    return step


def run(optimizer, steps=STEPS, loss_scale=False, variables=None):
    variables = make_variables() if variables is None else variables
    optimizer.build(variables)
    step = make_step(optimizer, variables, loss_scale)
    x, y = tf.constant(X, tf.float32), tf.constant(Y, tf.float32)
    history = []
    for _ in range(steps):
        step(x, y)
        history.append({k: v.numpy().astype(np.float64) for k, v in zip(NAMES, variables,
                                                                        strict=True)})
    return history


def assert_matches(history, reference):
    assert len(history) == len(reference)
    for t, (got, want) in enumerate(zip(history, reference, strict=True), start=1):
        for k in NAMES:
            # Compare the displacement from the start: float32 rounding of the
            # parameters (~3e-8 at 0.3) is far below the steps (~1e-3, ~1e-4 for q).
            np.testing.assert_allclose(got[k] - INITIAL[k], want[k] - INITIAL[k],
                                       rtol=2e-5, atol=1e-9, err_msg=f"{k} at step {t}")


def test_torch_adam_equals_pytorchs_rule_for_three_steps():
    assert_matches(run(TorchAdam(LR, epsilon=EPS)), torch_adam_reference())


def test_pytorch_moments_loaded_give_pytorchs_next_step():
    """A converted checkpoint's Adam state (exp_avg, exp_avg_sq at step 100): the next
    step equals PyTorch's to float32 rounding (stored unscaled, it was 6.4e-6 off)."""
    rng = np.random.default_rng(3)
    m = {k: rng.normal(0.0, 0.05, p.shape) for k, p in INITIAL.items()}
    v = {k: rng.uniform(1e-4, 1e-2, p.shape) for k, p in INITIAL.items()}
    # Parameters at 0, so that float32 holds the step itself to 6e-8 relative.
    zeros = {k: np.zeros_like(p) for k, p in INITIAL.items()}
    variables = make_variables(zeros)
    optimizer = TorchAdam(LR, epsilon=EPS)
    optimizer.build(variables)
    optimizer.iterations.assign(100)
    for k, variable in zip(NAMES, variables, strict=True):
        optimizer.assign_torch_moments(variable, m[k], v[k])
        back = optimizer.torch_moments(variable)
        np.testing.assert_allclose(back[0], m[k], rtol=1e-7)
        np.testing.assert_allclose(back[1], v[k], rtol=1e-7)
    make_step(optimizer, variables, loss_scale=False)(tf.constant(X, tf.float32),
                                                      tf.constant(Y, tf.float32))
    torch_adam_step(zeros, m, v, t=101)
    for k, variable in zip(NAMES, variables, strict=True):
        np.testing.assert_allclose(variable.numpy(), zeros[k], rtol=1e-6, err_msg=k)


def test_keras_adam_differs_only_where_the_gradient_is_tiny():
    reference = torch_adam_reference()
    keras_history = run(keras.optimizers.Adam(LR, epsilon=EPS))
    for got, want in zip(keras_history, reference, strict=True):
        for k in ("w", "b"):  # large gradients: the same steps
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5)
        # gradient 1e-9: Keras' step is < 1/20 of PyTorch's (lr/11 at step 1)
        assert np.all(np.abs(got["q"]) < np.abs(want["q"]) / 20)
    assert reference[0]["q"] == pytest.approx(np.full(2, -LR * TINY / (TINY + EPS)),
                                              rel=1e-9)


def torch_rmsprop_reference(steps=STEPS, lr=LR, alpha=0.99, eps=EPS):
    """PyTorch's RMSprop (not centred, no momentum) in NumPy, float64."""
    params = {k: v.copy() for k, v in INITIAL.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    history = []
    for _ in range(steps):
        grads = toy_gradients(params)
        for k in NAMES:
            v[k] = alpha * v[k] + (1 - alpha) * grads[k] ** 2
            params[k] = params[k] - lr * grads[k] / (np.sqrt(v[k]) + eps)
        history.append({k: p.copy() for k, p in params.items()})
    return history


def test_torch_rmsprop_equals_pytorchs_rule_for_three_steps():
    reference = torch_rmsprop_reference()
    assert_matches(run(TorchRMSprop(LR, epsilon=EPS)), reference)
    # Keras' RMSprop puts ε inside the square root: at gradient 1e-9 its step differs.
    keras_history = run(keras.optimizers.RMSprop(LR, rho=0.99, epsilon=EPS))
    assert np.all(np.abs(keras_history[0]["q"]) < np.abs(reference[0]["q"]) / 5)


def test_make_optimizer():
    optimizer = make_optimizer()
    assert isinstance(optimizer, TorchAdam)
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    assert optimizer.epsilon == 1e-8
    keras_adam = make_optimizer("keras_adam", learning_rate=1e-3, epsilon=1e-7)
    assert type(keras_adam) is keras.optimizers.Adam
    assert keras_adam.epsilon == 1e-7
    rmsprop = make_optimizer("torch_rmsprop", learning_rate=1e-4)
    assert isinstance(rmsprop, TorchRMSprop) and rmsprop.alpha == 0.99
    with pytest.raises(ValueError, match="torch_adam.*keras_adam.*torch_rmsprop"):
        make_optimizer("sgd")


def test_config_round_trip():
    optimizer = TorchAdam(learning_rate=3e-4, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, TorchAdam)
    for key in ("learning_rate", "beta_1", "beta_2", "epsilon"):
        assert clone.get_config()[key] == pytest.approx(optimizer.get_config()[key])
    with pytest.raises(ValueError, match="beta_2"):
        TorchAdam(beta_2=1.0)


def test_under_mirrored_strategy_on_two_cpus():
    # In a fresh process: collective ops of other MirroredStrategy instances that earlier
    # tests created in this process collide with this one's instance keys.
    if os.environ.get("GENESIS_TF_FRESH_PROCESS") != "1":
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"{__file__}::test_under_mirrored_strategy_on_two_cpus"],
            capture_output=True, text=True, timeout=300,
            env=dict(os.environ, GENESIS_TF_FRESH_PROCESS="1"))
        assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:]
        return
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        pytest.skip("needs two logical CPUs (tests/conftest.py)")
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        variables = make_variables()
        optimizer = TorchAdam(LR, epsilon=EPS)
        optimizer.build(variables)  # before strategy.run: slots created inside it fail
    half = len(Y) // 2

    def shard(array):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(array[ctx.replica_id_in_sync_group * half:
                                          (ctx.replica_id_in_sync_group + 1) * half],
                                    tf.float32))

    x, y = shard(X), shard(Y)

    @tf.function
    def step(x, y):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                loss = toy_loss(variables, x, y, len(Y))
            grads = tape.gradient(loss, [v.value for v in variables])
            optimizer.apply(grads, variables)  # sums the replicas' gradients

        strategy.run(replica_step, (x, y))

    history = []
    for _ in range(STEPS):
        step(x, y)
        history.append({k: v.numpy().astype(np.float64) for k, v in zip(NAMES, variables,
                                                                        strict=True)})
    assert_matches(history, torch_adam_reference())
    for variable in variables:  # the replicas' copies agree
        copies = strategy.experimental_local_results(variable.value)
        assert len(copies) == 2
        np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())


def test_inside_loss_scale_optimizer():
    optimizer = keras.optimizers.LossScaleOptimizer(TorchAdam(LR, epsilon=EPS))
    history = run(optimizer, loss_scale=True)
    assert_matches(history, torch_adam_reference())
    assert int(optimizer.iterations.numpy()) == STEPS


# --- checkpoint: two steps here, the third in a new process ---------------------------

CONTINUE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import tensorflow as tf
    from tests.training import test_optimizers as t
    from genesis_tf.training.optimizers import TorchAdam

    variables = t.make_variables({{k: np.full_like(v, 7.0) for k, v in t.INITIAL.items()}})
    optimizer = TorchAdam(t.LR, epsilon=t.EPS)
    optimizer.build(variables)
    checkpoint = tf.train.Checkpoint(optimizer=optimizer, variables=variables)
    checkpoint.restore({path!r}).assert_consumed()
    assert int(optimizer.iterations.numpy()) == 2
    history = t.run(optimizer, steps=1, variables=variables)
    np.savez({out!r}, **history[0])
""")


def test_checkpoint_round_trip_in_a_fresh_process(tmp_path):
    variables = make_variables()
    optimizer = TorchAdam(LR, epsilon=EPS)
    run(optimizer, steps=2, variables=variables)
    checkpoint = tf.train.Checkpoint(optimizer=optimizer, variables=variables)
    path = checkpoint.save(str(tmp_path / "ckpt"))

    # The file holds the iteration count and every m and v slot with its value.
    stored = dict(tf.train.list_variables(path))
    assert tf.train.load_variable(path, "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 2
    slots = optimizer._momentums + optimizer._velocities
    assert len(slots) == 2 * len(NAMES)
    # Keras tracks the slots by their index in optimizer.variables.
    index = {id(variable): i for i, variable in enumerate(optimizer.variables)}
    for slot in slots:
        key = f"optimizer/_variables/{index[id(slot)]}/.ATTRIBUTES/VARIABLE_VALUE"
        assert key in stored, (key, sorted(stored))
        saved = tf.train.load_variable(path, key)
        assert np.any(saved != 0)
        np.testing.assert_array_equal(saved, slot.numpy())

    out = tmp_path / "third_step.npz"
    script = CONTINUE_SCRIPT.format(path=path, out=str(out))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    continued = run(optimizer, steps=1, variables=variables)[0]  # this process's 3rd step
    restored = dict(np.load(out))
    for k in NAMES:
        np.testing.assert_array_equal(restored[k], continued[k], err_msg=k)
    assert_matches([restored], torch_adam_reference()[2:])
