"""The evaluators: one interface for every metric family (big_vision's evaluators).

An evaluator takes its `Options` in the constructor and scores a model with
``run(model, dataset) -> {name: value}``; `value` is {'mean', 'stderr', 'count',
'skipped'} for per-image scores, {'accuracy', ..., 'count'} for the probes and
{'value', 'count', ...} for FID. `EVALUATORS` names them for ``--metrics``; `evaluate`
builds and runs those asked for, so genesis-evaluate, the demo, the learning curve and the
training loop's validation all score through the same code:

    options = Options(split="test", num_images=256, data_dir=data_dir)
    results = evaluate(model, "multi_dsprites/colored_on_grayscale", ["ari", "sc"], options)
    print(table(results, step))

Every evaluator that needs the model's output on dataset images streams it through the
one forward pass of genesis_tf.metrics.forward. No evaluator reads flags.
"""
import contextlib
import dataclasses

from absl import logging

from genesis_tf import progress
from genesis_tf.errors import UserError


class EvaluationError(UserError, ValueError):
    """A metric cannot be computed as asked; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Options:
    """What the evaluators score on and how; the defaults are genesis-evaluate's flags'."""

    split: str = "test"
    num_images: int | None = None  # images of `split` to score; None: all (FID: fid_images)
    num_slots: int | None = None  # K at evaluation; None: as trained
    seed: int = 0  # of posterior and prior samples (batch i uses seed + i)
    batch_size: int = 32  # images per forward pass
    data_dir: str | None = None  # TFDS data_dir
    fid_images: int = 10_000  # generated, reconstructed and test images for FID
    inception_path: str | None = None  # classify_image_graph_def.pb or its folder
    network: object = None  # a loaded fid.InceptionNetwork (instead of inception_path)
    probe_train_images: int = 50_000  # train-split images the probes learn from
    probe_epochs: int = 100
    show_progress: bool = False  # progress lines on stderr (the binary)


@contextlib.contextmanager
def _progress(options, label, total):
    """A ProgressBar for `label` if the options ask for one, else None."""
    bar = progress.ProgressBar(label, total) if options.show_progress else None
    yield bar
    if bar is not None:
        bar.finish()


class SegmentationEvaluator:
    """'ari': foreground ARI and ARI over all pixels; 'sc': segmentation covering SC and
    mSC. Mean ± standard error over the images, one pass for both. For GENESIS-V2 both
    mask sets: the plain names score its IC-SBP masks, the names + '_decoded' its decoded
    masks, each result with 'masks' saying which (genesis_tf.metrics.segmentation)."""

    NAMES = {"ari": ("fg_ari", "ari"), "sc": ("sc", "msc")}

    def __init__(self, options=None, metrics=("ari", "sc"), keep_first=0):
        self.options, self.keep_first = options or Options(), keep_first
        self.names = [name for metric in self.NAMES if metric in metrics
                      for name in self.NAMES[metric]]
        self.first = None  # after run: the first keep_first images and outputs (figures)
        self.num_images = 0  # after run: how many images were scored

    def run(self, model, dataset):
        from genesis_tf.metrics import segmentation

        o = self.options
        with _progress(o, "segmentation", o.num_images) as bar:
            metrics, self.first = segmentation.segmentation_metrics(
                model, dataset, model.image_size, o.num_images, split=o.split,
                data_dir=o.data_dir, batch_size=o.batch_size, num_slots=o.num_slots,
                seed=o.seed, keep_first=self.keep_first, progress=bar)
        self.num_images = metrics["num_images"]
        # One block per mask set the output had (IC-SBP, then decoded), in self.names' order.
        return {name + suffix: metrics[name + suffix] for suffix in segmentation.KEY_SUFFIXES
                for name in self.names if name + suffix in metrics}

    @staticmethod
    def means(metrics, names=("fg_ari", "sc", "msc")):
        """{name: mean} of ``run``'s result for ``names`` and, where the model had decoded
        masks, their '_decoded' twins."""
        from genesis_tf.metrics import segmentation

        return {name + suffix: metrics[name + suffix]["mean"]
                for suffix in segmentation.KEY_SUFFIXES for name in names
                if name + suffix in metrics}


class FIDEvaluator:
    """'fid': FID of fid_images generated and of as many reconstructed images against as
    many test images, with the 2015-12-05 Inception graph (nothing is downloaded)."""

    def __init__(self, options=None, metrics=("fid",)):
        del metrics
        self.options = options = options or Options()
        # Loaded here, before any long work: the weights must be there.
        self.network = (options.network if options.network is not None
                        else _load_inception(options.inception_path))

    def run(self, model, dataset):
        from genesis_tf.metrics import fid

        n = self.options.fid_images
        statistics = {}
        for name, images in (("test", self._test_images), ("generated", self._generated),
                             ("reconstructed", self._reconstructions)):
            with _progress(self.options, f"FID, {name} images", n) as bar:
                # 8 bits by truncation, as the reference saved its images (np.uint8(255·x)).
                statistics[name] = fid.statistics_of(images(model, dataset), self.network,
                                                     progress=bar, rounding="truncate")
        count = statistics["test"].count
        if count < n:
            logging.warning("the %s split has %d images, fewer than --fid_images=%d",
                            self.options.split, count, n)
        return {
            f"fid_{name}": {"value": statistics[name].frechet_distance(statistics["test"]),
                            "count": statistics[name].count, "reference_count": count}
            for name in ("generated", "reconstructed")
        }

    def _test_images(self, model, dataset):
        from genesis_tf import data as data_lib

        o = self.options
        for batch in data_lib.eval_dataset(dataset, model.image_size, o.batch_size,
                                           split=o.split, data_dir=o.data_dir,
                                           max_examples=o.fid_images):
            yield batch["image"]

    def _reconstructions(self, model, dataset):
        from genesis_tf.metrics import forward

        o = self.options
        for _, out in forward.forward_batches(
                model, dataset, model.image_size, split=o.split, data_dir=o.data_dir,
                batch_size=o.batch_size, num_images=o.fid_images, num_slots=o.num_slots,
                seed=o.seed):
            yield out.recon

    def _generated(self, model, dataset):
        del dataset
        import tensorflow as tf

        o = self.options
        generate = tf.function(lambda count, s: model.sample(batch_size=count, seed=s,
                                                             num_slots=o.num_slots).recon)
        done = 0
        while done < o.fid_images:
            count = min(o.batch_size, o.fid_images - done)
            yield generate(count, tf.constant(o.seed + done, tf.int32))
            done += count


def _load_inception(path):
    from genesis_tf.metrics import fid

    try:
        return fid.load_inception(path)
    except (FileNotFoundError, ValueError) as error:  # no file, or not the Inception graph
        raise EvaluationError(str(error)) from error


class ProbeEvaluator:
    """'probes', ShapeStacks only: test accuracy of MLP probes on the model's features for
    stability, height and view (GENESIS Table 1 settings), trained on probe_train_images
    of the train split and tested on num_images of `split`."""

    def __init__(self, options=None, metrics=("probes",)):
        del metrics
        self.options = options or Options()

    def run(self, model, dataset):
        from genesis_tf.metrics import probes

        o = self.options
        if not dataset.startswith("shapestacks"):
            raise EvaluationError(f"probes need ShapeStacks labels; {dataset} has none "
                                  "(evaluate a run trained on shapestacks, or pass "
                                  "--dataset=shapestacks)")
        collected = {}
        for split, count in (("train", o.probe_train_images), (o.split, o.num_images)):
            with _progress(o, f"probe features, {split}", count) as bar:
                collected[split] = probes.collect_features(
                    model, dataset, model.image_size, split, data_dir=o.data_dir,
                    batch_size=o.batch_size, max_examples=count, progress=bar,
                    num_slots=o.num_slots)
        accuracies = probes.run_probes(collected["train"], collected[o.split],
                                       epochs=o.probe_epochs)
        count = len(collected[o.split][0])
        return {f"probe_{task}": dict(values, count=count)
                for task, values in accuracies.items()}


# --metrics names -> evaluator class; names of one class share one evaluator (one pass).
# The order is the order of the results and of the printed table.
EVALUATORS = {
    "ari": SegmentationEvaluator,
    "sc": SegmentationEvaluator,
    "fid": FIDEvaluator,
    "probes": ProbeEvaluator,
    # "elbo": an ElboEvaluator whose run(model, dataset) returns metrics/elbo.py's
    # validation ELBO on options.split (num_images // batch_size batches), so that the
    # training loop's validation action calls evaluate(net, dataset, ["elbo"], options).
}
METRICS = tuple(EVALUATORS)


def check_metrics(metrics, what="metrics"):
    """Raises EvaluationError, naming `what`, if `metrics` is empty or names an unknown one."""
    unknown = [m for m in metrics if m not in EVALUATORS]
    if unknown or not metrics:
        named = ", ".join(unknown) or "(none given)"
        raise EvaluationError(f"{what}: unknown {named}; choose from {', '.join(METRICS)}")


def evaluators(metrics, options=None):
    """The evaluators of `metrics` (names of EVALUATORS), one per class, in EVALUATORS'
    order. Building them checks what can be checked before any long work (FID's weights)."""
    check_metrics(metrics)
    options = options or Options()
    families = {}
    for name, cls in EVALUATORS.items():
        if name in metrics:
            families.setdefault(cls, []).append(name)
    return [cls(options, metrics=tuple(names)) for cls, names in families.items()]


def run_all(evaluators_, model, dataset):
    """{name: value} of every evaluator's run, in order."""
    results = {}
    for evaluator in evaluators_:
        try:
            results.update(evaluator.run(model, dataset))
        except ValueError as error:
            if isinstance(error, UserError):
                raise
            # The data and metric code says in a ValueError what the request cannot give
            # (no such split, no instance masks, an empty split): the user's to change.
            raise EvaluationError(str(error)) from error
    return results


def evaluate(model, dataset, metrics, options=None):
    """Scores `model` on `dataset` with `metrics` (names of EVALUATORS): {name: value}."""
    return run_all(evaluators(metrics, options), model, dataset)


# A line above the table for datasets whose segmentation scores need a word (issue 32).
# APC's masks label only the background (0) and the one object (1): ARI over all pixels is
# the figure the reference reports; restricted to the object, every pixel has one label,
# so fg_ari is 1 when the object lies in one predicted segment and 0 otherwise.
DATASET_NOTES = {
    "apc": "APC: ari is over all pixels, background included (the reference's APC figure); "
           "fg_ari has no background label here (one object: 1 if it lies in one segment, "
           "else 0)",
}


def table(results, step, dataset=None):
    """The printed table: one row per metric; a row of a result that says which masks it
    scored (GENESIS-V2's two mask sets) ends with 'masks: ...'. With `dataset` (its name,
    e.g. 'apc'), a note on what its segmentation rows mean comes first where it has one."""
    rows = [f"{'metric':<20} {'value':>17} {'images':>8}   (checkpoint step {step})"]
    note = DATASET_NOTES.get((dataset or "").partition("/")[0])
    if note and any(name.startswith(("ari", "fg_ari")) for name in results):
        rows.insert(0, note)
    for name, value in results.items():
        if "mean" in value:
            text = f"{value['mean']:.4f} ± {value['stderr']:.4f}"
            count = value["count"]
            if value.get("skipped"):
                name = f"{name} ({value['skipped']} skipped)"
        elif "accuracy" in value:
            text = f"{100 * value['accuracy']:.1f} %"
            count = value.get("count", "")
        else:
            text, count = f"{value['value']:.2f}", value.get("count", "")
        masks = f"   masks: {value['masks']}" if value.get("masks") else ""
        rows.append(f"{name:<20} {text:>17} {count!s:>8}{masks}")
    return "\n".join(rows)
