"""Manual files first, else download, else a fast clear error: every builder, both branches.

The builders run through the real `download_and_prepare` with a real TFDS DownloadManager
(so its `manual_dir` property raises as it does for users when the folder is missing); only
the network is faked: `DownloadManager.download` returns copies of the dummy_data files
(the real source formats), GQN's bucket listing maps gs:// to those files, and the
reachability probe's socket function is replaced.
"""
import pathlib
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from genesis_tf import cli
from genesis_tf.tools import build_dataset
from tfds_builders import downloads
from tfds_builders.gqn_rooms_ring_camera import gqn_rooms_ring_camera_dataset_builder as gqn
from tfds_builders.multi_dsprites import multi_dsprites_dataset_builder as dsprites
from tfds_builders.shapestacks import shapestacks_dataset_builder as shapestacks

BUILDERS = pathlib.Path(dsprites.__file__).parents[1]
DSPRITES_DUMMY = BUILDERS / "multi_dsprites" / "dummy_data"
GQN_DUMMY = BUILDERS / "gqn_rooms_ring_camera" / "dummy_data"
SHAPESTACKS_DUMMY = BUILDERS / "shapestacks" / "dummy_data"
SHAPESTACKS_URLS = {k: f"{shapestacks.BASE_URL}/{v}" for k, v in shapestacks.ARCHIVES.items()}
GQN_URL = "gs://gqn-dataset/rooms_ring_camera"
SMALL_SPLITS = {"train": 6, "validation": 3, "test": 4}


# ------------------------------------------------------------------ fakes and fixtures


class _Connection:
    def close(self):
        pass


@pytest.fixture
def network_up(monkeypatch):
    """The probe's connections succeed; returns the (host, port) pairs it tried."""
    tried = []

    def connect(address, timeout=None):
        tried.append(address)
        return _Connection()

    monkeypatch.setattr(downloads, "_create_connection", connect)
    return tried


@pytest.fixture
def network_down(monkeypatch):
    """The probe's DNS lookups fail at once, as on a machine without network."""
    def connect(address, timeout=None):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(downloads, "_create_connection", connect)


@pytest.fixture
def network_hangs(monkeypatch):
    """The probe's DNS lookup never answers (a resolver that retries for minutes)."""
    release = threading.Event()

    def connect(address, timeout=None):
        release.wait(60)
        raise TimeoutError("timed out")

    monkeypatch.setattr(downloads, "_create_connection", connect)
    monkeypatch.setattr(downloads, "PROBE_TIMEOUT", 1.0)
    yield
    release.set()


@pytest.fixture
def fake_download(tmp_path, monkeypatch):
    """Patches DownloadManager.download: {url: dummy file} -> copies in tmp; records calls."""
    sources = {dsprites.DSPRITES_URL: DSPRITES_DUMMY / dsprites.DSPRITES_FILE}
    for key, url in SHAPESTACKS_URLS.items():
        sources[url] = SHAPESTACKS_DUMMY / shapestacks.ARCHIVES[key]
    calls = []
    fetched = tmp_path / "fetched"

    def download(self, url_or_urls):
        assert isinstance(self, tfds.download.DownloadManager)
        calls.append(dict(url_or_urls))
        fetched.mkdir(exist_ok=True)
        result = {}
        for key, url in url_or_urls.items():
            local = fetched / f"{key}-{pathlib.PurePosixPath(url).name}"
            shutil.copyfile(sources[url], local)
            result[key] = local
        return result

    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    return calls


@pytest.fixture
def small_dsprites(monkeypatch):
    for split, size in SMALL_SPLITS.items():
        monkeypatch.setitem(dsprites.SPLIT_SIZES, split, size)


@pytest.fixture
def fake_bucket(monkeypatch):
    """gs://gqn-dataset listings answered from dummy_data; returns the patterns asked."""
    patterns = []
    real_glob = gqn._glob

    def glob(pattern):
        patterns.append(pattern)
        if pattern.startswith(GQN_URL + "/"):
            return real_glob(str(GQN_DUMMY / "rooms_ring_camera") + pattern[len(GQN_URL):])
        return real_glob(pattern)

    monkeypatch.setattr(gqn, "_glob", glob)
    return patterns


def _prepare(builder_cls, config, tmp_path, manual_dir=None):
    kwargs = {"config": config} if config else {}
    builder = builder_cls(data_dir=str(tmp_path / "data"), **kwargs)
    builder.download_and_prepare(
        download_dir=str(tmp_path / "downloads"),
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir) if manual_dir else None,
            compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return builder


def _counts(builder):
    return {name: info.num_examples for name, info in builder.info.splits.items()}


def _manual_with(tmp_path, *files):
    """A manual folder holding copies of `files` (an unrelated file if none)."""
    folder = tmp_path / "manual"
    folder.mkdir()
    for f in files:
        shutil.copyfile(f, folder / f.name)
    if not files:
        (folder / "README.txt").write_text("something else")
    return folder


def _no_download(self, url_or_urls):
    raise AssertionError(f"download called with {url_or_urls}")


# ------------------------------------------------------------------ Multi-dSprites


def test_dsprites_manual_archive_is_used_without_download(tmp_path, small_dsprites,
                                                          monkeypatch, network_down):
    monkeypatch.setattr(tfds.download.DownloadManager, "download", _no_download)
    manual = _manual_with(tmp_path, DSPRITES_DUMMY / dsprites.DSPRITES_FILE)
    builder = _prepare(dsprites.Builder, "colored", tmp_path, manual)
    assert _counts(builder) == SMALL_SPLITS


@pytest.mark.parametrize("manual", ["absent", "without_the_file"])
def test_dsprites_downloads_the_archive_when_manual_lacks_it(
        tmp_path, small_dsprites, fake_download, network_up, manual):
    folder = _manual_with(tmp_path) if manual == "without_the_file" else None
    builder = _prepare(dsprites.Builder, "colored", tmp_path, folder)
    assert fake_download == [{"dsprites": dsprites.DSPRITES_URL}]
    assert network_up == [("github.com", 443)]
    assert _counts(builder) == SMALL_SPLITS
    # The examples come from the downloaded archive: every sprite mask is one of its rows.
    archive = np.load(DSPRITES_DUMMY / dsprites.DSPRITES_FILE)
    example = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
    assert example["num_objects"] == len(example["objects"]["shape"])
    assert set(example["objects"]["shape"]) <= set(archive["latents_classes"][:, 1])


def test_dsprites_without_network_fails_fast_naming_url_and_alternatives(
        tmp_path, small_dsprites, fake_download, network_down):
    start = time.monotonic()
    with pytest.raises(downloads.NetworkUnreachableError) as error:
        _prepare(dsprites.Builder, "colored", tmp_path)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert dsprites.DSPRITES_URL in message and "--manual_dir" in message
    assert "--config=offline_colored" in message and "DNS lookup failed" in message
    assert "\n" not in message and fake_download == []


def test_a_hanging_dns_lookup_is_cut_off_by_the_probe(tmp_path, small_dsprites,
                                                      fake_download, network_hangs):
    start = time.monotonic()
    with pytest.raises(downloads.NetworkUnreachableError, match="no answer within 1 s"):
        _prepare(dsprites.Builder, "colored_unique", tmp_path)
    assert time.monotonic() - start < 10 and fake_download == []


def test_dsprites_offline_config_needs_neither_manual_files_nor_network(
        tmp_path, small_dsprites, monkeypatch, network_down):
    monkeypatch.setattr(tfds.download.DownloadManager, "download", _no_download)
    assert _counts(_prepare(dsprites.Builder, "offline_colored", tmp_path)) == SMALL_SPLITS


def test_a_cached_download_is_reused_without_network(tmp_path, network_down):
    """A second build offline finds the archive in TFDS's download cache: no probe."""
    from tensorflow_datasets.core.download import checksums, resource

    manager = tfds.download.DownloadManager(
        download_dir=tmp_path / "downloads", dataset_name="multi_dsprites",
        manual_dir=tmp_path / "manual", manual_dir_instructions="x")
    cached = manager._get_dl_path(resource.Resource(url=dsprites.DSPRITES_URL))
    cached.parent.mkdir(parents=True)
    shutil.copyfile(DSPRITES_DUMMY / dsprites.DSPRITES_FILE, cached)
    resource.write_info_file(url=dsprites.DSPRITES_URL, path=cached,
                             dataset_name="multi_dsprites",
                             original_fname=dsprites.DSPRITES_FILE,
                             url_info=checksums.compute_url_info(cached))
    builder = dsprites.Builder(config="colored", data_dir=str(tmp_path / "data"))
    assert builder._archive_path(manager) == str(cached)  # the real download(), offline


# ------------------------------------------------------------------ ShapeStacks

SHAPESTACKS_SPLITS = {"train": 4, "validation": 2, "test": 2}


def test_shapestacks_manual_archives_are_used_without_download(tmp_path, monkeypatch,
                                                               network_down):
    monkeypatch.setattr(tfds.download.DownloadManager, "download", _no_download)
    manual = _manual_with(tmp_path, *sorted(SHAPESTACKS_DUMMY.glob("*.tar.gz")))
    assert _counts(_prepare(shapestacks.Builder, None, tmp_path, manual)) == \
        SHAPESTACKS_SPLITS


@pytest.mark.parametrize("manual", ["absent", "without_the_files"])
def test_shapestacks_downloads_the_archives_when_manual_lacks_them(
        tmp_path, fake_download, network_up, manual):
    folder = _manual_with(tmp_path) if manual == "without_the_files" else None
    builder = _prepare(shapestacks.Builder, None, tmp_path, folder)
    assert fake_download == [SHAPESTACKS_URLS]
    assert network_up == [("shapestacks-file.robots.ox.ac.uk", 80)]  # one probe per host
    assert _counts(builder) == SHAPESTACKS_SPLITS
    example = next(iter(tfds.as_numpy(builder.as_dataset(split="test"))))
    assert example["scenario"].decode().startswith("env_")


def test_shapestacks_downloads_only_the_archives_missing_from_manual(
        tmp_path, fake_download, network_up):
    manual = _manual_with(tmp_path, SHAPESTACKS_DUMMY / shapestacks.ARCHIVES["meta"],
                          SHAPESTACKS_DUMMY / shapestacks.ARCHIVES["iseg"])
    builder = _prepare(shapestacks.Builder, None, tmp_path, manual)
    assert fake_download == [{"rgb": SHAPESTACKS_URLS["rgb"]}]
    assert _counts(builder) == SHAPESTACKS_SPLITS


def test_shapestacks_without_network_fails_fast_naming_url_and_manual_dir(
        tmp_path, fake_download, network_down):
    start = time.monotonic()
    with pytest.raises(downloads.NetworkUnreachableError) as error:
        _prepare(shapestacks.Builder, None, tmp_path)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert shapestacks.BASE_URL in message and "--manual_dir" in message
    for name in shapestacks.ARCHIVES.values():
        assert name in message
    assert fake_download == []


# ------------------------------------------------------------------ GQN


GQN_SPLITS = {"train": 40, "validation": 20, "test": 20}


def test_gqn_manual_files_are_used_without_the_bucket(tmp_path, fake_bucket, network_down):
    builder = _prepare(gqn.Builder, "first_files", tmp_path, GQN_DUMMY)
    assert _counts(builder) == GQN_SPLITS
    assert not any(p.startswith("gs://") for p in fake_bucket)


@pytest.mark.parametrize("manual", ["absent", "without_the_files"])
def test_gqn_reads_the_bucket_when_manual_lacks_the_files(
        tmp_path, fake_bucket, network_up, manual):
    folder = _manual_with(tmp_path) if manual == "without_the_files" else None
    builder = _prepare(gqn.Builder, None, tmp_path, folder)
    assert builder.builder_config.name == "full"
    assert fake_bucket == [f"{GQN_URL}/train/*.tfrecord", f"{GQN_URL}/test/*.tfrecord"]
    assert network_up == [(downloads.GCS_HOST, 443)]
    assert _counts(builder) == GQN_SPLITS
    scenes = {ex["scene"].decode() for ex in tfds.as_numpy(builder.as_dataset(split="test"))}
    assert scenes == {"0001-of-0240.tfrecord:0", "0001-of-0240.tfrecord:1"}


def test_gqn_without_network_fails_fast_naming_bucket_and_manual_dir(
        tmp_path, fake_bucket, network_down):
    start = time.monotonic()
    with pytest.raises(downloads.NetworkUnreachableError) as error:
        _prepare(gqn.Builder, "first_files", tmp_path)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert GQN_URL in message and "--manual_dir" in message and "gsutil" in message
    assert fake_bucket == []  # tf.io.gfile never touched the bucket


# ------------------------------------------------------------------ the probe itself


def test_manual_dir_is_none_when_tfds_would_raise(tmp_path):
    manager = tfds.download.DownloadManager(
        download_dir=tmp_path / "dl", manual_dir=tmp_path / "missing",
        manual_dir_instructions="x")
    with pytest.raises(AssertionError):
        _ = manager.manual_dir
    assert downloads.manual_dir(manager) is None
    assert downloads.configured_manual_dir(manager) == str(tmp_path / "missing")
    assert downloads.manual_files(manager, {"a": "a.npz"}) == {}


def test_probe_with_real_sockets_on_localhost():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        downloads.check_reachable(f"http://127.0.0.1:{port}/file", "advice")
    # The port is closed now: refused at once.
    start = time.monotonic()
    with pytest.raises(downloads.NetworkUnreachableError, match="ConnectionRefusedError"):
        downloads.check_reachable(f"http://127.0.0.1:{port}/file", "Use --manual_dir.")
    assert time.monotonic() - start < 5


def test_probe_targets_the_proxy_and_can_be_skipped(monkeypatch, network_down):
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert downloads.probe_target(dsprites.DSPRITES_URL) == ("github.com", 443)
    assert downloads.probe_target(GQN_URL) == (downloads.GCS_HOST, 443)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert downloads.probe_target(dsprites.DSPRITES_URL) == ("proxy.example", 3128)
    monkeypatch.setenv("no_proxy", "github.com")
    assert downloads.probe_target(dsprites.DSPRITES_URL) == ("github.com", 443)
    monkeypatch.setenv(downloads.SKIP_PROBE_ENV, "1")
    downloads.check_reachable(dsprites.DSPRITES_URL, "advice")  # no error: not probed


# ------------------------------------------------------------------ the entry point


@pytest.mark.parametrize("argv, expected", [
    (["build", "tfds_builders/gqn_rooms_ring_camera"], ["gqn_rooms_ring_camera/full"]),
    (["build", "multi_dsprites"], ["multi_dsprites/offline_colored"]),
    (["build", "tfds_builders/shapestacks/"], ["shapestacks"]),  # no configs
    (["build", "multi_dsprites/colored"], ["multi_dsprites/colored"]),
    (["build", "multi_dsprites:1.0.0", "shapestacks"],
     ["multi_dsprites/offline_colored:1.0.0", "shapestacks"]),
    (["build", "gqn_rooms_ring_camera", "--config=first_files"], ["gqn_rooms_ring_camera"]),
    (["build", "gqn_rooms_ring_camera", "--config_idx", "1"], ["gqn_rooms_ring_camera"]),
])
def test_entry_point_names_the_default_config_when_none_is_given(argv, expected):
    args = build_dataset._parse(["genesis-build-dataset", *argv])
    assert args.positional_datasets + args.datasets == expected


def test_entry_point_without_config_builds_only_the_default_config(
        tmp_path, small_dsprites, monkeypatch, network_down):
    monkeypatch.setattr(tfds.download.DownloadManager, "download", _no_download)
    args = build_dataset._parse(["genesis-build-dataset", "build", "tfds_builders/multi_dsprites",
                                 f"--data_dir={tmp_path}", "--max_examples_per_split=2"])
    build_dataset.main(args)
    built = tmp_path / "multi_dsprites"
    assert sorted(p.name for p in built.iterdir() if not p.name.startswith(".")) == \
        ["offline_colored"]
    builder = tfds.builder("multi_dsprites/offline_colored", data_dir=str(tmp_path))
    assert builder.is_prepared() and _counts(builder) == {s: 2 for s in SMALL_SPLITS}


def test_usage_text_says_only_the_default_config_is_built(capsys):
    with pytest.raises(SystemExit):
        build_dataset._normalise(["genesis-build-dataset", "--help"])
    assert "only the default config is built" in capsys.readouterr().out


def test_entry_point_reports_no_network_as_one_message_and_exit_code_2(
        tmp_path, fake_download, network_down, capsys):
    args = build_dataset._parse(["genesis-build-dataset", "build", "multi_dsprites",
                                 "--config=colored", f"--data_dir={tmp_path}"])
    start = time.monotonic()
    # As genesis-build-dataset runs main: genesis_tf.cli reports the UserError.
    code = cli._reporting_user_errors(build_dataset.main, args)
    assert code == 2 and time.monotonic() - start < 10
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: Cannot download " + dsprites.DSPRITES_URL)
    assert "--manual_dir" in message and fake_download == []


def test_a_failed_build_into_a_new_data_dir_leaves_no_empty_folder(
        tmp_path, fake_download, network_down, capsys):
    """Issue 30: a failed online build left an empty --data_dir tree behind."""
    data_dir = tmp_path / "new" / "tfds"
    args = build_dataset._parse(["genesis-build-dataset", "build", "multi_dsprites",
                                 "--config=colored", f"--data_dir={data_dir}"])
    assert cli._reporting_user_errors(build_dataset.main, args) == 2
    assert not data_dir.exists()
    kept = tmp_path / "kept"  # a data_dir that existed before is left as it was
    kept.mkdir()
    args = build_dataset._parse(["genesis-build-dataset", "build", "multi_dsprites",
                                 "--config=colored", f"--data_dir={kept}"])
    assert cli._reporting_user_errors(build_dataset.main, args) == 2
    assert kept.is_dir()
