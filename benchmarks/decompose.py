"""Images per second decomposed into masks and components (inference, tf.function).

    python benchmarks/decompose.py [--num_slots=7] [--batch_size=32] [--policy=mixed_bfloat16]
"""
import tensorflow as tf
from inference import parser, run


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()

    def make_fn(model):
        images = tf.random.uniform([args.batch_size, args.image_size, args.image_size, 3])

        @tf.function
        def decompose():
            out = model(images, training=False)
            return out.log_masks, out.components

        return decompose

    return run(args, "decompose", make_fn)


if __name__ == "__main__":
    main()
