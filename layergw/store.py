"""ResultStore: read and write results under a root URI through ``pyarrow.fs``.

One class covers a local directory (plain path or ``file://``), ``s3://`` (AWS or any
S3-compatible server through an explicit endpoint) and ``gs://``. Every write is atomic,
so a file that exists is complete; that is what lets a rerun skip finished work.

At about 500 lines this module is longer than most: one class carries the atomic-write,
listing and error protocol over three filesystems, and how a URI and its endpoint become
a ``pyarrow.fs`` filesystem is kept beside it so one file says what a store URI means.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pathlib
import random
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["ENDPOINT_ENV", "MissingResult", "ResultStore", "StoreError"]

log = logging.getLogger(__name__)

#: Environment variable naming the S3 endpoint (``HOST:PORT`` or ``http://HOST:PORT``);
#: pyarrow ignores ``AWS_ENDPOINT_URL``, so layergw reads its own.
ENDPOINT_ENV = "LAYERGW_S3_ENDPOINT"

# Query keys accepted on s3:// and gs:// URIs, in the order they are written back.
_QUERY_KEYS = ("endpoint_override", "scheme", "region", "anonymous")
_TEMP_MARK = ".layergw-tmp-"
_PROBE_NAME = ".layergw-probe-"
# Fail fast on an unreachable endpoint: seconds, not the SDK's minutes of retries.
_CONNECT_TIMEOUT_S = 5.0
_REQUEST_TIMEOUT_S = 60.0
_S3_MAX_ATTEMPTS = 3
_GCS_RETRY_LIMIT_S = 15
_READ_THREADS = 8
# Transient store errors (throttling, 5xx, dropped connections) are retried on top of the SDK's
# own attempts: at most _RETRY_ATTEMPTS calls per operation, sleeping a jittered, capped
# exponential backoff between them (base * 2^k, at most _RETRY_CAP_S, times 0.5..1).
_RETRY_ATTEMPTS = 5
_RETRY_BASE_S = 0.25
_RETRY_CAP_S = 8.0
_TRANSIENT = re.compile(
    r"SLOW_?DOWN|THROTTL|SERVICE_UNAVAILABLE|INTERNAL_FAILURE|TOO_MANY_REQUESTS|HTTP status (?:429|5\d\d)|"
    r"status code:? (?:429|5\d\d)|UNAVAILABLE|RESOURCE_EXHAUSTED|NETWORK_CONNECTION|Connection reset|Broken pipe|"
    r"Empty reply from server", re.IGNORECASE)
# ... but not a server that is not there or does not answer: those fail at once (store.check)
_UNREACHABLE = re.compile(r"curlCode: (?:6|7|28)\b|Couldn't connect|Could not resolve|Timeout was reached",
                          re.IGNORECASE)


class StoreError(RuntimeError):
    """The result store cannot be reached or written, or a result is missing."""


class MissingResult(StoreError, FileNotFoundError):
    """A requested result file does not exist (also a ``FileNotFoundError``)."""


def _parse_endpoint(value: str) -> tuple[str, str | None]:
    """Split ``HOST:PORT`` or ``SCHEME://HOST:PORT`` into (host:port, scheme or None)."""
    value = value.strip()
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"bad S3 endpoint {value!r}: expected HOST:PORT or http(s)://HOST:PORT")
        return parts.netloc, parts.scheme
    if not value or "/" in value:
        raise ValueError(f"bad S3 endpoint {value!r}: expected HOST:PORT or http(s)://HOST:PORT")
    return value, None


def _clean_path(path: str) -> str:
    """Normalize a relative store path; reject '..' and absolute paths (ValueError)."""
    if not isinstance(path, str):
        raise TypeError(f"store paths are str, got {type(path).__name__}")
    if path.startswith("/"):
        raise ValueError(f"store path {path!r} is absolute; paths are relative to the store root")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"store path {path!r} contains '..'; paths must stay under the store root")
    return "/".join(parts)


def transient(exc: BaseException) -> bool:
    """Whether a store error is worth retrying: throttling, a server error or a dropped
    connection, not a missing object, a denied request or a server that is not there."""
    text = str(exc)
    return bool(_TRANSIENT.search(text)) and not _UNREACHABLE.search(text)


def _json_default(obj: Any) -> Any:
    """JSON for NumPy scalars/arrays and paths; anything else is a TypeError, not a silent str()."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


class _FsCell:
    """The filesystem a store and its children share, built on first use."""

    def __init__(self) -> None:
        self.fs: pafs.FileSystem | None = None
        self.lock = threading.Lock()


class ResultStore:
    """Files under a root URI: bytes, JSON, Parquet tables and NumPy arrays.

    ``uri`` is a plain path (relative paths become absolute), ``file:///abs/path``,
    ``s3://bucket/prefix`` or ``gs://bucket/prefix``. The S3 endpoint comes from
    ``endpoint``, else the URI query (``?endpoint_override=HOST:PORT&scheme=http``),
    else ``$LAYERGW_S3_ENDPOINT``; the one chosen is kept in ``self.uri`` so the URI
    alone rebuilds the same store (on a Ray worker, say). Credentials come from the
    usual AWS/GCP environment. The filesystem is built on first use.
    """

    def __init__(self, uri: str, *, endpoint: str | None = None) -> None:
        uri = os.fspath(uri)
        if not uri:
            raise ValueError("empty result store URI")
        parts = urlsplit(uri) if "://" in uri else None  # anything else is a plain path
        scheme = parts.scheme.lower() if parts else ""
        self._query: dict[str, str] = {}
        if scheme in ("s3", "gs"):
            assert parts is not None
            if not parts.netloc:
                raise ValueError(f"result store URI {uri!r} has no bucket: expected {scheme}://bucket/prefix")
            self._scheme = scheme
            self._bucket = parts.netloc
            self._prefix = _clean_path(unquote(parts.path).lstrip("/"))
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            unknown = sorted(set(query) - set(_QUERY_KEYS))
            if unknown:
                raise ValueError(
                    f"unsupported query parameter(s) {unknown} in {uri!r}; supported: {list(_QUERY_KEYS)} "
                    "(pass credentials through the environment, never the URI)"
                )
            # Endpoint precedence: the keyword, then the URI query, then $LAYERGW_S3_ENDPOINT.
            source = endpoint
            if source is None and "endpoint_override" not in query and scheme == "s3":
                source = os.environ.get(ENDPOINT_ENV)
            if source:
                host, ep_scheme = _parse_endpoint(source)
                query["endpoint_override"] = host
                if ep_scheme:
                    query["scheme"] = ep_scheme
            if query.get("scheme") not in (None, "http", "https"):
                raise ValueError(f"scheme must be http or https in {uri!r}, got {query['scheme']!r}")
            self._query = {k: query[k] for k in _QUERY_KEYS if k in query}
        elif scheme in ("file", ""):
            if parts is not None:
                if parts.netloc not in ("", "localhost"):
                    raise ValueError(f"file URI {uri!r} names a host; use file:///absolute/path")
                local = unquote(parts.path)
            else:
                local = uri
            self._scheme = "file"
            self._bucket = ""
            self._prefix = os.path.abspath(os.path.expanduser(local)).replace(os.sep, "/").rstrip("/") or "/"
        else:
            raise ValueError(f"unsupported result store URI {uri!r}: use a path, file://, s3:// or gs://")
        self._fs_cell = _FsCell()

    # -- identity -----------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The normalized root URI; for s3/gs it keeps the endpoint query, so it round-trips."""
        return self._uri_of(self._root_path(), with_query=True)

    @property
    def endpoint(self) -> str | None:
        """The endpoint override (``HOST:PORT``) in use, or None for the provider default."""
        return self._query.get("endpoint_override")

    def __repr__(self) -> str:
        return f"ResultStore({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResultStore) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild the filesystem from the URI on the receiving side (e.g. a Ray worker).
        return (ResultStore, (self.uri,))

    def child(self, *parts: str) -> ResultStore:
        """A store rooted at ``root/parts``, on the same filesystem and endpoint."""
        sub = _clean_path("/".join(parts))
        new = object.__new__(ResultStore)
        new._scheme, new._bucket, new._query = self._scheme, self._bucket, dict(self._query)
        new._prefix = _join(self._prefix, sub) if self._scheme != "file" else (
            (self._prefix.rstrip("/") + "/" + sub) if sub else self._prefix
        )
        new._fs_cell = self._fs_cell  # children share one (lazily built) filesystem
        return new

    def parent(self) -> ResultStore:
        """The store one folder up (``child``'s inverse for one level)."""
        new = self.child()
        new._prefix = self._prefix.rstrip("/").rpartition("/")[0] or ("/" if self._scheme == "file" else "")
        return new

    def url(self, path: str = "") -> str:
        """The full URI of ``path`` under the root, without the endpoint query (for messages)."""
        return self._uri_of(self._full(path), with_query=False)

    def local_path(self) -> pathlib.Path | None:
        """The root as a local Path for a local store, else None."""
        return pathlib.Path(self._prefix) if self._scheme == "file" else None

    # -- reading and writing ------------------------------------------------------

    def exists(self, path: str) -> bool:
        """Whether a file or directory exists at ``path``."""
        full = self._full(path)
        info = self._call("check existence of", path, lambda: self.filesystem.get_file_info(full))
        return info.type != pafs.FileType.NotFound

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` atomically: a reader sees the old file, no file, or all of it."""
        if not _clean_path(path):
            raise ValueError("write needs a file path, not the store root")
        full = self._full(path)
        fs = self.filesystem
        if self._scheme == "file":
            def write(tmp: str) -> None:
                with fs.open_output_stream(tmp) as out:
                    out.write(data)

            self._call("write", path, lambda: self._via_temp(full, write))
        else:
            # Object stores: an object appears only when its upload completes; the data is
            # complete in memory before the upload starts, so there is no partial object.
            def write_object() -> None:
                out = fs.open_output_stream(full)
                out.write(data)
                out.close()

            self._call("write", path, write_object)
        log.debug("wrote %d bytes to %s", len(data), self.url(path))

    def write_file(self, path: str, local: str | pathlib.Path, chunk: int = 16 << 20) -> None:
        """Copy the local file ``local`` to ``path`` in chunks, without holding it in memory
        (streamed extraction's point files). Atomic everywhere: the copy goes to a temporary
        name beside ``path`` and is moved there whole (an object store's output stream would
        publish a cut-off upload when closed on an error)."""
        if not _clean_path(path):
            raise ValueError("write needs a file path, not the store root")
        src = pathlib.Path(local)
        if not src.is_file():
            raise ValueError(f"write_file: the local file {src} does not exist")
        fs = self.filesystem

        def copy(tmp: str) -> None:
            with src.open("rb") as f, fs.open_output_stream(tmp) as out:
                while block := f.read(chunk):
                    out.write(block)

        self._call("write", path, lambda: self._via_temp(self._full(path), copy))
        log.debug("wrote %s to %s", src, self.url(path))

    def _via_temp(self, full: str, write: Any) -> None:
        """``write(tmp)`` to a temporary name beside ``full``, then move it there (a rename on
        POSIX, a server-side copy on object stores); the temporary is removed on any failure."""
        fs = self.filesystem
        parent, _, name = full.rpartition("/")
        tmp = f"{parent}/{_TEMP_MARK}{name}.{uuid.uuid4().hex[:12]}"
        if self._scheme == "file":
            fs.create_dir(parent, recursive=True)
        try:
            write(tmp)
            fs.move(tmp, full)
        except BaseException:
            try:
                fs.delete_file(tmp)
            except OSError:
                pass
            raise

    def read_bytes(self, path: str) -> bytes:
        """The contents of the file at ``path``; MissingResult if it does not exist."""
        full = self._full(path)

        def read() -> bytes:
            with self.filesystem.open_input_stream(full) as f:
                return f.read()

        return self._call("read", path, read)

    def write_json(self, path: str, obj: Any) -> None:
        """Write ``obj`` as indented, key-sorted JSON (UTF-8; NumPy values as lists/numbers), atomically."""
        self.write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode("utf-8"))

    def read_json(self, path: str) -> Any:
        """Parse the JSON file at ``path``."""
        return json.loads(self.read_bytes(path).decode("utf-8"))

    def write_table(self, path: str, table: pa.Table) -> None:
        """Write ``table`` as Parquet, atomically (serialized in memory first)."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.write_bytes(path, sink.getvalue().to_pybytes())

    def read_table(self, path: str) -> pa.Table:
        """Read the Parquet file at ``path``: the whole object in one sequential read (result
        files are small), not the ranged reads of a random-access file, which cost a request
        each on an object store (and hang against the GCS emulator the tests use)."""
        full = self._full(path)

        def read() -> pa.Table:
            with self.filesystem.open_input_stream(full) as f:
                return pq.read_table(pa.BufferReader(f.read()))

        return self._call("read", path, read)

    def read_tables(self, prefix: str = "", schema: pa.Schema | None = None) -> pa.Table | None:
        """Concatenate every ``*.parquet`` under ``prefix`` (recursive, sorted paths).

        Returns None when there are none. With ``schema``, each table is conformed to it:
        columns in schema order, cast to its types, missing columns as nulls, others dropped.
        Without it, differing schemas are unified (permissive type promotion).
        """
        paths = self.list_files(prefix, suffix=".parquet")
        if not paths:
            return None
        if len(paths) == 1:
            tables = [self.read_table(paths[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(_READ_THREADS, len(paths))) as pool:
                tables = list(pool.map(self.read_table, paths))
        if schema is not None:
            return pa.concat_tables([self._conform(t, schema, p) for t, p in zip(tables, paths)])
        return pa.concat_tables(tables, promote_options="permissive")

    def write_array(self, path: str, arr: np.ndarray) -> None:
        """Write ``arr`` in ``.npy`` format (no pickled objects), atomically."""
        buf = io.BytesIO()
        np.save(buf, np.asarray(arr), allow_pickle=False)
        self.write_bytes(path, buf.getvalue())

    def read_array(self, path: str) -> np.ndarray:
        """Read a ``.npy`` array written by :meth:`write_array`."""
        return np.load(io.BytesIO(self.read_bytes(path)), allow_pickle=False)

    def list_files(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Paths (relative to the root) of files under ``prefix`` ending in ``suffix``; sorted.

        Recursive; [] when ``prefix`` does not exist. In-flight temp files are skipped.
        """
        base = self._full(prefix)
        root = self._root_path()

        def listing() -> list[pafs.FileInfo]:
            info = self.filesystem.get_file_info(base)
            if info.type == pafs.FileType.File:
                return [info]
            if info.type == pafs.FileType.NotFound and self._scheme == "file":
                return []
            sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            return self.filesystem.get_file_info(sel)

        out = []
        for info in self._call("list", prefix, listing):
            if info.type != pafs.FileType.File:
                continue
            name = info.base_name
            if name.startswith(_TEMP_MARK) or name.startswith(_PROBE_NAME):
                continue
            if suffix and not name.endswith(suffix):
                continue
            rel = info.path[len(root):].lstrip("/") if root else info.path
            out.append(rel)
        return sorted(out)

    def upload_dir(self, local: str | pathlib.Path, prefix: str) -> int:
        """Copy every file under the local folder ``local`` to ``prefix`` (each write atomic);
        returns the number of files. Write a completion marker after it, not before."""
        local = pathlib.Path(local)
        if not local.is_dir():
            raise StoreError(f"upload_dir: {local} is not a folder")
        files = sorted(p for p in local.rglob("*") if p.is_file())
        for p in files:
            self.write_bytes(_join(prefix, p.relative_to(local).as_posix()), p.read_bytes())
        return len(files)

    def download_dir(self, prefix: str, local: str | pathlib.Path) -> pathlib.Path:
        """Copy every file under ``prefix`` into the local folder ``local``; returns it.

        A missing or empty prefix is a MissingResult naming it."""
        local = pathlib.Path(local)
        paths = self.list_files(prefix)
        if not paths:
            raise MissingResult(f"nothing stored under {self.url(prefix)}")
        base = _clean_path(prefix)
        for rel in paths:
            dest = local / rel[len(base):].lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.read_bytes(rel))
        return local

    def delete(self, path: str) -> None:
        """Delete the file or directory (recursively) at ``path``; absent is not an error."""
        full = self._full(path)

        def remove() -> None:
            fs = self.filesystem
            info = fs.get_file_info(full)
            if info.type == pafs.FileType.File:
                fs.delete_file(full)
            elif info.type == pafs.FileType.Directory:
                if self._scheme == "file":
                    fs.delete_dir(full)
                    return
                fs.delete_dir_contents(full, missing_dir_ok=True)
                # a directory marker object may remain (S3); never delete the bucket itself
                if "/" in full and fs.get_file_info(full).type == pafs.FileType.Directory:
                    fs.delete_dir(full)

        self._call("delete", path, remove)

    def check(self) -> None:
        """Verify the root is reachable and writable by writing and deleting a probe file.

        Raises StoreError naming the URI, the cause and a hint; meant to run before a
        long job so a bad endpoint, bucket or permission fails in seconds.
        """
        probe = f"{_PROBE_NAME}{uuid.uuid4().hex[:12]}"
        try:
            self.write_bytes(probe, b"layergw probe\n")
            if self.read_bytes(probe) != b"layergw probe\n":
                raise StoreError(f"result store {self.uri} returned different bytes than were written")
            self.delete(probe)
        except StoreError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise StoreError(f"cannot reach result store {self.uri}: {exc}") from cause
        log.debug("result store %s is reachable and writable", self.uri)

    # -- internals ----------------------------------------------------------------

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The ``pyarrow.fs`` filesystem (built once, on first use)."""
        cell = self._fs_cell
        if cell.fs is None:
            with cell.lock:
                if cell.fs is None:
                    cell.fs = self._build_filesystem()
        return cell.fs

    def _build_filesystem(self) -> pafs.FileSystem:
        if self._scheme == "file":
            return pafs.LocalFileSystem()
        q = self._query
        anonymous = q.get("anonymous", "").lower() in ("1", "true", "yes")
        if self._scheme == "gs":
            import datetime

            return pafs.GcsFileSystem(
                anonymous=anonymous,
                endpoint_override=q.get("endpoint_override"),
                scheme=q.get("scheme"),
                retry_time_limit=datetime.timedelta(seconds=_GCS_RETRY_LIMIT_S),
            )
        region = q.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None and "endpoint_override" in q:
            region = "us-east-1"  # S3-compatible servers ignore it; avoids the SDK's EC2 lookup
        elif region is None:
            try:  # real AWS with no region configured: ask where the bucket lives
                region = pafs.resolve_s3_region(self._bucket)
            except OSError as exc:
                log.debug("could not resolve the region of bucket %s: %s", self._bucket, exc)
        return pafs.S3FileSystem(
            anonymous=anonymous,
            region=region,
            endpoint_override=q.get("endpoint_override"),
            scheme=q.get("scheme", "https"),
            connect_timeout=_CONNECT_TIMEOUT_S,
            request_timeout=_REQUEST_TIMEOUT_S,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=_S3_MAX_ATTEMPTS),
            allow_delayed_open=True,  # small files: one PUT instead of a multipart upload
        )

    def _root_path(self) -> str:
        """The root as a pyarrow path: ``/abs/dir`` locally, ``bucket/prefix`` remotely."""
        return self._prefix if self._scheme == "file" else _join(self._bucket, self._prefix)

    def _full(self, path: str) -> str:
        rel = _clean_path(path)
        root = self._root_path()
        if not rel:
            return root
        return f"{root.rstrip('/')}/{rel}" if root != "/" else f"/{rel}"

    def _uri_of(self, fs_path: str, *, with_query: bool) -> str:
        if self._scheme == "file":
            return "file://" + quote(fs_path)
        uri = f"{self._scheme}://{quote(fs_path)}"
        if with_query and self._query:
            uri += "?" + urlencode(self._query, safe=":")
        return uri

    def _hint(self) -> str:
        if self._scheme == "file":
            return "check that the directory can be created and written by this user"
        if self._scheme == "gs":
            return ("check the bucket name and the credentials (GOOGLE_APPLICATION_CREDENTIALS), "
                    "and endpoint_override for a local GCS server")
        ep = self.endpoint
        where = f"endpoint {ep} ({self._query.get('scheme', 'https')})" if ep else (
            f"AWS (no endpoint; set ?endpoint_override=HOST:PORT&scheme=http or ${ENDPOINT_ENV} "
            "for an S3-compatible server)"
        )
        return (f"check the endpoint/credentials: {where}, bucket {self._bucket!r} must exist, "
                "credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the AWS config")

    def _call(self, what: str, path: str, fn: Any) -> Any:
        """Run a filesystem operation, turning pyarrow's OSErrors into StoreErrors naming the URI
        and the operation. A transient error (throttling, a 5xx, a dropped connection) is
        retried with capped, jittered exponential backoff and a log line per retry, up to
        ``_RETRY_ATTEMPTS`` calls; every write is atomic, so a retried one never leaves a part."""
        for attempt in range(1, _RETRY_ATTEMPTS + 1):
            try:
                return fn()
            except FileNotFoundError as exc:
                raise MissingResult(f"no result at {self.url(path)} (cannot {what} it: {exc})") from exc
            except StoreError:
                raise
            except (OSError, pa.ArrowException) as exc:
                if what == "read" and "Path does not exist" in str(exc):
                    raise MissingResult(f"no result at {self.url(path)}: {exc}") from exc
                if attempt < _RETRY_ATTEMPTS and transient(exc):
                    delay = min(_RETRY_CAP_S, _RETRY_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                    log.warning("store: cannot %s %s (attempt %d of %d): %s; retrying in %.2f s", what,
                                self.url(path), attempt, _RETRY_ATTEMPTS, str(exc).splitlines()[0][:300], delay)
                    time.sleep(delay)
                    continue
                tried = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
                raise StoreError(f"cannot {what} {self.url(path)}{tried}: {exc}; {self._hint()}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _conform(table: pa.Table, schema: pa.Schema, path: str) -> pa.Table:
        """``table`` with exactly ``schema``'s columns (cast, nulls for missing ones)."""
        cols = []
        for field in schema:
            if field.name in table.column_names:
                col = table.column(field.name)
                try:
                    cols.append(col.cast(field.type) if col.type != field.type else col)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ValueError(f"column {field.name!r} of {path} cannot be cast to {field.type}: {exc}") from exc
            else:
                cols.append(pa.nulls(table.num_rows, type=field.type))
        return pa.Table.from_arrays(cols, schema=schema)
