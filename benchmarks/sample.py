"""Scenes per second generated slot by slot from the priors (model.sample in tf.function).

    python benchmarks/sample.py [--num_slots=7] [--batch_size=32] [--policy=mixed_bfloat16]
"""
import tensorflow as tf
from inference import parser, run


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()

    def make_fn(model):
        return tf.function(lambda: model.sample(batch_size=args.batch_size).recon)

    return run(args, "sample", make_fn)


if __name__ == "__main__":
    main()
