"""SavedModels for TF Serving (genesis_tf/export/saved_model.py has the details).

    from genesis_tf.export import export_model
    export_model(model, "exports/gqn/5000")

    python -m genesis_tf.export --model_dir=runs/gqn --export_dir=exports/gqn

Names are imported on first use, so that `python -m genesis_tf.export` can quieten
TensorFlow's start-up messages before TensorFlow is imported.
"""
_NAMES = ("ExportError", "ServingModule", "WARMUP_FILE", "describe_signatures", "export_model",
          "read_export_info")


def __getattr__(name):
    if name in _NAMES:
        from genesis_tf.export import saved_model

        return getattr(saved_model, name)
    raise AttributeError(f"module 'genesis_tf.export' has no attribute {name!r}")


__all__ = list(_NAMES)
