"""Test helper: DatasetBuilderTestCase with the carved validation/test splits cut to one
record each (the dummy files hold 4 records; the real files 100,000 or 1M)."""

SMALL_SPLIT_RECORDS = {"test": 1, "validation": 1}
SMALL_SPLITS = {"train": 2, "validation": 1, "test": 1}  # from a 4-record dummy file


class SmallSplits:
    """Mixin for tfds.testing.DatasetBuilderTestCase: patches DATASET_CLASS.SPLIT_RECORDS."""

    @classmethod
    def setUpClass(cls):
        cls._saved_split_records = dict(cls.DATASET_CLASS.SPLIT_RECORDS)
        cls.DATASET_CLASS.SPLIT_RECORDS.update(SMALL_SPLIT_RECORDS)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        cls.DATASET_CLASS.SPLIT_RECORDS.update(cls._saved_split_records)
        super().tearDownClass()
