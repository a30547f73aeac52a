"""ResultStore on a local directory and on a moto S3 server: round-trips, listing,
atomic writes, pickling, reachability checks and path validation."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from layergw.store import ENDPOINT_ENV, MissingResult, ResultStore, StoreError


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3), pytest.param("gs", marks=pytest.mark.gcs)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ResultStore:
    """The same tests on every backend: a local tmp dir, a fresh moto bucket and a fresh
    bucket on the GCS emulator."""
    if request.param == "local":
        return ResultStore(str(tmp_path / "root"))
    return ResultStore(request.getfixturevalue(f"{request.param}_uri"))


def _table(n: int = 3, start: int = 0) -> pa.Table:
    return pa.table({"i": pa.array(range(start, start + n), pa.int64()), "x": [float(v) / 2 for v in range(n)]})


# -- round trips --------------------------------------------------------------------


def test_bytes_round_trip_and_overwrite(store: ResultStore) -> None:
    store.write_bytes("a/b/c.bin", b"\x00hello")
    assert store.read_bytes("a/b/c.bin") == b"\x00hello"
    store.write_bytes("a/b/c.bin", b"second")
    assert store.read_bytes("a/b/c.bin") == b"second"


def test_json_round_trip(store: ResultStore) -> None:
    obj = {"k": [1, 2.5, None, "s"], "nested": {"a": True}}
    store.write_json("meta/run.json", obj)
    assert store.read_json("meta/run.json") == obj
    store.write_json("meta/np.json", {"v": np.float64(0.5), "a": np.arange(2)})
    assert store.read_json("meta/np.json") == {"v": 0.5, "a": [0, 1]}
    with pytest.raises(TypeError):
        store.write_json("meta/bad.json", {"o": object()})
    assert not store.exists("meta/bad.json")


def test_table_round_trip(store: ResultStore) -> None:
    t = _table(5)
    store.write_table("pairs/tile-0.parquet", t)
    assert store.read_table("pairs/tile-0.parquet").equals(t)


def test_array_round_trip_keeps_dtype_and_shape(store: ResultStore) -> None:
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    store.write_array("reps/layer0.npy", arr)
    back = store.read_array("reps/layer0.npy")
    assert back.dtype == np.float32 and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, arr)


def test_exists_for_files_and_directories(store: ResultStore) -> None:
    assert not store.exists("d/f.bin")
    store.write_bytes("d/f.bin", b"x")
    assert store.exists("d/f.bin")
    assert store.exists("d")


def test_missing_file_raises_missing_result_naming_uri(store: ResultStore) -> None:
    for read in (store.read_bytes, store.read_table, store.read_json, store.read_array):
        with pytest.raises(MissingResult) as info:
            read("nope/missing.parquet")
        assert store.url("nope/missing.parquet") in str(info.value)
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, StoreError)


# -- listing and concatenation ------------------------------------------------------


def test_list_files_relative_sorted_and_filtered(store: ResultStore) -> None:
    for p in ["z.txt", "b/2.parquet", "a/1.parquet", "b/c/0.parquet", "b/notes.txt"]:
        store.write_bytes(p, b"x")
    assert store.list_files() == ["a/1.parquet", "b/2.parquet", "b/c/0.parquet", "b/notes.txt", "z.txt"]
    assert store.list_files("b", suffix=".parquet") == ["b/2.parquet", "b/c/0.parquet"]
    assert store.list_files("absent") == []


def test_read_tables_concatenates_nested_prefixes_in_path_order(store: ResultStore) -> None:
    store.write_table("pairs/m1/tile-1.parquet", _table(2, start=10))
    store.write_table("pairs/m0/tile-0.parquet", _table(2, start=0))
    store.write_table("pairs/m1/deep/tile-2.parquet", _table(1, start=20))
    store.write_bytes("pairs/readme.txt", b"not a table")
    out = store.read_tables("pairs")
    assert out is not None
    assert out.column("i").to_pylist() == [0, 1, 20, 10, 11]  # m0/..., m1/deep/..., m1/tile-1


def test_read_tables_returns_none_when_no_parquet(store: ResultStore) -> None:
    assert store.read_tables("pairs") is None
    store.write_bytes("pairs/x.txt", b"x")
    assert store.read_tables("pairs") is None


def test_read_tables_conforms_to_schema(store: ResultStore) -> None:
    store.write_table("t/0.parquet", pa.table({"i": pa.array([1], pa.int32()), "extra": ["e"]}))
    store.write_table("t/1.parquet", pa.table({"i": pa.array([2], pa.int64()), "v": [0.5]}))
    schema = pa.schema([("i", pa.int64()), ("v", pa.float64())])
    out = store.read_tables("t", schema=schema)
    assert out is not None and out.schema == schema
    assert out.to_pylist() == [{"i": 1, "v": None}, {"i": 2, "v": 0.5}]


def test_read_tables_unifies_null_and_typed_columns_without_schema(store: ResultStore) -> None:
    store.write_table("t/0.parquet", pa.table({"value": pa.nulls(1), "error": ["boom"]}))
    store.write_table("t/1.parquet", pa.table({"value": [1.5], "error": pa.nulls(1, pa.string())}))
    out = store.read_tables("t")
    assert out is not None and out.column("value").to_pylist() == [None, 1.5]


# -- atomicity ----------------------------------------------------------------------


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    s = ResultStore(str(tmp_path))
    s.write_table("out/t.parquet", _table())
    s.write_bytes("out/b.bin", b"abc")
    assert sorted(os.listdir(tmp_path / "out")) == ["b.bin", "t.parquet"]


def test_interrupted_table_write_leaves_no_file(store: ResultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_writer(table: pa.Table, where: object, **kwargs: object) -> None:
        where.write(b"PAR1 partial")  # type: ignore[attr-defined]
        raise RuntimeError("writer died mid-way")

    monkeypatch.setattr(pq, "write_table", broken_writer)
    with pytest.raises(RuntimeError, match="mid-way"):
        store.write_table("out/t.parquet", _table())
    assert not store.exists("out/t.parquet")
    assert store.list_files() == []


def test_interrupted_local_write_after_temp_file_removes_temp(tmp_path: Path) -> None:
    s = ResultStore(str(tmp_path))
    real = s.filesystem

    class RenameFails:
        """The local filesystem, except that the final rename fails."""

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def move(self, src: str, dst: str) -> None:
            raise OSError("rename interrupted")

    s._fs_cell.fs = RenameFails()  # type: ignore[assignment]
    with pytest.raises(StoreError, match="rename interrupted"):
        s.write_bytes("out/t.bin", b"data")
    assert os.listdir(tmp_path / "out") == []


# -- identity, child, pickling --------------------------------------------------------


def test_child_shares_root_and_filesystem(store: ResultStore) -> None:
    run = store.child("runs", "r1")
    run.write_bytes("x.bin", b"1")
    assert store.read_bytes("runs/r1/x.bin") == b"1"
    assert store.list_files("runs") == ["runs/r1/x.bin"]
    assert run.list_files() == ["x.bin"]
    assert run.filesystem is store.filesystem
    assert run.url("x.bin") == store.url("runs/r1/x.bin")
    assert ResultStore(run.uri).read_bytes("x.bin") == b"1"


def test_pickled_store_reads_what_original_wrote(store: ResultStore) -> None:
    store.write_table("t.parquet", _table())
    clone = pickle.loads(pickle.dumps(store))
    assert clone.uri == store.uri and clone.filesystem is not store.filesystem
    assert clone.read_table("t.parquet").equals(_table())
    clone.write_bytes("from-clone.bin", b"c")
    assert store.read_bytes("from-clone.bin") == b"c"


def test_delete_file_directory_and_absent(store: ResultStore) -> None:
    store.write_bytes("d/a.bin", b"a")
    store.write_bytes("d/e/b.bin", b"b")
    store.write_bytes("keep.bin", b"k")
    store.delete("d/a.bin")
    assert store.list_files() == ["d/e/b.bin", "keep.bin"]
    store.delete("d")
    store.delete("never/there")
    assert store.list_files() == ["keep.bin"]


def test_check_passes_and_leaves_nothing(store: ResultStore) -> None:
    store.check()
    assert store.list_files() == []


# -- URIs and endpoints ---------------------------------------------------------------


def test_local_uri_forms_normalize_to_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = ResultStore("runs/demo/")
    assert rel.local_path() == tmp_path / "runs" / "demo"
    assert rel.uri == (tmp_path / "runs" / "demo").as_uri()
    assert ResultStore(rel.uri) == rel
    assert rel.url("a/b.parquet") == (tmp_path / "runs" / "demo" / "a" / "b.parquet").as_uri()


def test_s3_endpoint_from_query_kwarg_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    q = ResultStore("s3://b/p/?endpoint_override=h:9000&scheme=http")
    assert q.uri == "s3://b/p?endpoint_override=h:9000&scheme=http" and q.endpoint == "h:9000"
    assert q.local_path() is None and q.url("x") == "s3://b/p/x"
    assert ResultStore("s3://b/p", endpoint="http://k:1").uri == "s3://b/p?endpoint_override=k:1&scheme=http"
    assert ResultStore("s3://b/p?endpoint_override=h:9000", endpoint="k:2").endpoint == "k:2"
    monkeypatch.setenv(ENDPOINT_ENV, "http://envhost:9000")
    env = ResultStore("s3://b")
    assert env.uri == "s3://b?endpoint_override=envhost:9000&scheme=http"
    assert ResultStore("s3://b?endpoint_override=h:1").endpoint == "h:1"  # the URI wins over env
    monkeypatch.delenv(ENDPOINT_ENV)
    assert pickle.loads(pickle.dumps(env)).endpoint == "envhost:9000"  # kept without the env


def test_gs_uri_and_bad_uris() -> None:
    assert ResultStore("gs://bucket/a/b").uri == "gs://bucket/a/b"
    for bad in ["ftp://x/y", "s3:///nobucket", "s3://b/p?secret_key=s", "s3://b?scheme=ftp", ""]:
        with pytest.raises(ValueError):
            ResultStore(bad)


def test_dotdot_and_absolute_paths_rejected(tmp_path: Path) -> None:
    s = ResultStore(str(tmp_path))
    for bad in ["../x", "a/../../x", "a/..", "/etc/passwd"]:
        with pytest.raises(ValueError):
            s.write_bytes(bad, b"x")
    with pytest.raises(ValueError):
        s.read_bytes("..")
    with pytest.raises(ValueError):
        s.child("a", "..", "..")
    with pytest.raises(ValueError):
        ResultStore("s3://b/a/../c")


# -- unreachable stores ---------------------------------------------------------------


@pytest.mark.s3
def test_check_unreachable_endpoint_fails_fast_naming_uri(s3_server: str) -> None:
    uri = "s3://bucket/run?endpoint_override=127.0.0.1:1&scheme=http"
    s = ResultStore(uri)
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        s.check()
    assert time.monotonic() - start < 10
    msg = str(info.value)
    assert "s3://bucket/run" in msg and "127.0.0.1:1" in msg and "endpoint" in msg


@pytest.mark.s3
def test_check_missing_bucket_raises_store_error(s3_uri: str) -> None:
    s = ResultStore(s3_uri.replace("s3://", "s3://no-such-"))
    with pytest.raises(StoreError, match="no-such-"):
        s.check()


def test_check_local_root_under_regular_file_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    s = ResultStore(str(blocker / "runs"))
    with pytest.raises(StoreError) as info:
        s.check()
    assert str(blocker / "runs") in str(info.value)



@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_folders_round_trip_through_the_store(where: str, tmp_path, request) -> None:
    uri = str(tmp_path / "store") if where == "local" else request.getfixturevalue("s3_uri")
    store = ResultStore(uri)
    src = tmp_path / "ckpt"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    assert store.upload_dir(src, "train/job/seed-0/final") == 2
    out = store.download_dir("train/job/seed-0/final", tmp_path / "copy")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["config.json", "sub/weights.bin"]
    assert (out / "sub" / "weights.bin").read_bytes() == (src / "sub" / "weights.bin").read_bytes()
    with pytest.raises(MissingResult, match="nothing stored under .*train/nope"):
        store.download_dir("train/nope", tmp_path / "x")


def test_parent_is_the_inverse_of_child(tmp_path) -> None:
    root = ResultStore(str(tmp_path / "root"))
    run = root.child("study", "run1")
    run.write_json("x.json", {"a": 1})
    assert run.parent().read_json("run1/x.json") == {"a": 1}
    assert run.parent().parent().url() == root.url()


# -- transient faults ------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "retried"), [
    ("AWS Error SLOW_DOWN during PutObject operation: Please reduce your request rate.", True),
    ("AWS Error UNKNOWN (HTTP status 503) during HeadObject operation: No response body.", True),
    ("AWS Error NETWORK_CONNECTION during PutObject operation: curlCode: 52, Empty reply from server", True),
    ("google::cloud::Status(UNAVAILABLE: Retry policy exhausted)", True),
    ("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Couldn't connect to server", False),
    ("AWS Error ACCESS_DENIED during PutObject operation: Access Denied", False),
    ("AWS Error NO_SUCH_BUCKET during HeadBucket operation: The specified bucket does not exist", False),
])
def test_throttling_server_errors_and_dropped_connections_are_transient(message: str, retried: bool) -> None:
    from layergw.store import transient

    assert transient(OSError(message)) is retried


@pytest.mark.long
@pytest.mark.s3
@pytest.mark.parametrize("mode", ["503", "reset"])
def test_a_flaky_store_is_retried_until_every_write_and_read_lands(s3_uri: str, s3_server: str, mode: str,
                                                                   quick_retries, caplog) -> None:
    from tests.faults import FaultProxy

    with FaultProxy(s3_server, share=0.5, seed=1, mode=mode) as proxy:
        flaky = ResultStore(s3_uri.replace(s3_server, proxy.endpoint))
        with caplog.at_level("WARNING", logger="layergw.store"):
            for i in range(8):
                flaky.write_table(f"t/{i}.parquet", _table(4, start=i))
            assert sorted(flaky.read_tables("t").column("i").to_pylist()) == sorted(
                v for i in range(8) for v in range(i, i + 4))
    assert proxy.failed > 0 and "retrying in" in caplog.text
    direct = ResultStore(s3_uri)  # what the store really holds, read without faults
    assert direct.list_files("t") == sorted(f"t/{i}.parquet" for i in range(8))


@pytest.mark.long
@pytest.mark.s3
def test_a_store_that_always_fails_gives_up_naming_uri_and_operation(s3_uri: str, s3_server: str,
                                                                                         quick_retries) -> None:
    import layergw.store as store_module
    from tests.faults import FaultProxy

    with FaultProxy(s3_server, share=1.0) as proxy:
        flaky = ResultStore(s3_uri.replace(s3_server, proxy.endpoint))
        with pytest.raises(StoreError) as info:
            flaky.write_table("t/0.parquet", _table())
    msg = str(info.value)
    assert flaky.url("t/0.parquet") in msg and msg.startswith("cannot write")
    assert f"gave up after {store_module._RETRY_ATTEMPTS} attempts" in msg
    # bounded: the SDK's own attempts for each of layergw's
    assert proxy.failed == store_module._RETRY_ATTEMPTS * store_module._S3_MAX_ATTEMPTS and proxy.forwarded == 0
    assert not ResultStore(s3_uri).exists("t/0.parquet")


def test_write_file_copies_a_local_file_in_chunks(store: ResultStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    store.write_file("reps/m/0.npy", src, chunk=65_536)
    assert store.read_bytes("reps/m/0.npy") == data
    assert store.list_files("reps") == ["reps/m/0.npy"]  # no temporary left beside it


def test_an_interrupted_write_file_leaves_no_file(store: ResultStore, tmp_path: Path, monkeypatch) -> None:
    import pathlib

    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    real_open = pathlib.Path.open

    class FailsAfterOneChunk:
        def __init__(self, f):
            self.f, self.reads = f, 0

        def read(self, size):
            self.reads += 1
            if self.reads > 1:
                raise OSError("the local disk went away")
            return self.f.read(size)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(pathlib.Path, "open", lambda self, *a, **k: FailsAfterOneChunk(real_open(self, *a, **k)))
    with pytest.raises(StoreError, match="the local disk went away"):
        store.write_file("a/f.bin", src, chunk=100)
    monkeypatch.undo()
    assert not store.exists("a/f.bin")  # an object store would have published the first 100 bytes
