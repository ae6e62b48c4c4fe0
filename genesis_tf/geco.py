"""GECO (Rezende & Viola 2018): minimise the KL subject to a reconstruction constraint.

The constraint is C = goal − err_ema ≥ 0 with err_ema an exponential moving average of the
batch-mean reconstruction error (nats per image). The Lagrange multiplier β follows
β ← clip(β · exp(s · C'), 1e-10, 1e10), where s is the step size and C' = C·speedup while
C > 0. So β grows while reconstructions are better than the goal (the KL gets more
weight; ×speedup makes that fast) and shrinks while they are worse. The loss is
err + β·KL with β held constant (not differentiated).

Constants from the GENESIS reference implementation: goal = 0.5655·H·W·C,
s = 1e-5·64²/(H·W), α = 0.99, speedup 10, β₀ = 1.

In gin, GECO is configured as `GECO.alpha`, `GECO.speedup`, `GECO.goal_per_pixel`,
`GECO.step_size_scale` and `GECO.beta_init` (the factory `configured_geco` below).
"""
import gin
import tensorflow as tf

GOAL_PER_PIXEL = 0.5655
BASE_STEP_SIZE = 1e-5


class GECO(tf.Module):
    """β and err_ema as checkpointable, replica-safe tf.Variables."""

    def __init__(self, goal, step_size, alpha=0.99, speedup=10.0, beta_init=1.0,
                 beta_min=1e-10, beta_max=1e10, name="geco"):
        super().__init__(name=name)
        self.goal = float(goal)
        self.step_size = float(step_size)
        self.alpha = float(alpha)
        self.speedup = float(speedup) if speedup is not None else None
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

        # ONLY_FIRST_REPLICA: an assign in replica context writes replica 0's value to all
        # copies; with the default aggregation they would silently drift apart, with no error.
        def variable(value, var_name, dtype=tf.float32):
            return tf.Variable(
                value,
                dtype=dtype,
                trainable=False,
                name=var_name,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )

        self.beta = variable(beta_init, "beta")
        self.err_ema = variable(0.0, "err_ema")
        self.initialised = variable(False, "err_ema_initialised", dtype=tf.bool)

    @classmethod
    def for_image(cls, height, width, channels=3, goal_per_pixel=GOAL_PER_PIXEL,
                  step_size_scale=1.0, **kwargs):
        """GECO with the reference's goal and step size for H×W×C images; goal_per_pixel
        and step_size_scale (× the reference's step) change them for other settings."""
        return cls(
            goal=goal_per_pixel * height * width * channels,
            step_size=step_size_scale * BASE_STEP_SIZE * 64 * 64 / (height * width),
            **kwargs,
        )

    def loss(self, err, kl):
        """err + β·kl, with β a constant for the gradient."""
        return err + tf.stop_gradient(tf.cast(self.beta, err.dtype)) * kl

    def update(self, err):
        """Moves err_ema and β given the batch- and replica-averaged error; returns β."""
        err = tf.cast(tf.stop_gradient(err), tf.float32)
        ema = tf.where(
            self.initialised, (1.0 - self.alpha) * err + self.alpha * self.err_ema, err
        )
        self.err_ema.assign(ema)
        self.initialised.assign(True)
        constraint = self.goal - ema
        if self.speedup is not None:
            constraint = tf.where(constraint > 0.0, constraint * self.speedup, constraint)
        beta = tf.clip_by_value(
            self.beta * tf.exp(self.step_size * constraint), self.beta_min, self.beta_max
        )
        self.beta.assign(beta)
        return tf.identity(self.beta)


@gin.configurable("GECO", module="genesis_tf.geco", denylist=["height", "width", "channels"])
def configured_geco(height, width, channels=3, alpha=0.99, speedup=10.0,
                    goal_per_pixel=GOAL_PER_PIXEL, step_size_scale=1.0, beta_init=1.0):
    """GECO.for_image with the knobs a .gin file binds as GECO.<name>.

    A factory rather than the class: goal_per_pixel and step_size_scale are the
    image-size-free forms of the constructor's goal and step size (the image size is the
    loop's, train.image_size). Every shipped experiment keeps the reference's values.
    """
    return GECO.for_image(height, width, channels, goal_per_pixel=goal_per_pixel,
                          step_size_scale=step_size_scale, alpha=alpha, speedup=speedup,
                          beta_init=beta_init)
