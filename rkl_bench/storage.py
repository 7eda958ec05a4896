"""A place to read and write results: a local path, or a URI of a pyarrow filesystem.

``--storage``, results archives and report inputs may be local paths (as
always) or URIs that ``pyarrow.fs.FileSystem.from_uri`` understands:
``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///abs/path``. This
module owns that distinction, so the rest of the service says "a location"
and never tests for a scheme itself.

* A local path (or ``file://`` URI) is a :class:`Location` whose ``fs`` is
  None: every helper is the plain ``pathlib`` operation the code used
  before, so local behaviour is unchanged.
* A URI is a pyarrow filesystem plus a path in it. Credentials and the
  endpoint come from the standard variables the filesystem reads
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``,
  ``AWS_DEFAULT_REGION``; ``GOOGLE_APPLICATION_CREDENTIALS`` for GCS) or
  from the URI's query (``?endpoint_override=host:port&scheme=http``).
  The query is kept out of messages (:attr:`Location.display`).

Object stores have no directories and no rename: a directory exists when
some object lies under it, and :meth:`Location.write_bytes` is one PUT,
which an object store makes visible whole or not at all.

:func:`mirror` copies the result files of a remote location (rows, records,
archives, lambda(s), a search's summaries and figures; never checkpoints or
pickles) into a temporary local directory, so the report and the exporter read
them with the same code as a local directory; nothing read back is executed.
While the copy lives, :func:`shown` names a path in it by the location it was
copied from (what a report page or a message says), and an ``RklBenchError``
raised inside the block has the temporary paths in its message replaced the
same way: a reader never sees ``/tmp/rkl_bench_mirror_...``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence, TypeVar
from urllib.parse import urlsplit

from rkl_bench import layout
from rkl_bench.errors import RklBenchError

REACH_TIMEOUT_S = 30.0
"""How long :func:`check_reachable` waits for an object store to answer."""
MIRRORED_NAMES = frozenset({
    layout.RESULT_FILE, layout.METRICS_FILE, layout.RUN_FILE, layout.PARAMS_FILE, layout.LAMBDAS_FILE,
    layout.EXPERIMENT_RECORD_FILE, layout.ARCHIVE_FILE, layout.ROWS_FILE,
    layout.SEARCH_RECORD_FILE, layout.SEARCH_SUMMARY_FILE, layout.TRIALS_FILE, layout.BEST_CONFIG_FILE,
})
"""The files :func:`mirror` copies: what reports and archives read (no checkpoints, no Tune state),
plus a search's figures (``figures/*.png``, ``*.pdf`` at the top of the location)."""
FIGURE_SUFFIXES = (".png", ".pdf")
GROUP_LAMBDAS = re.compile(re.escape(layout.GROUP_LAMBDAS_FILE).replace(re.escape("{seed}"), r"\d+"))
"""Each seed's lambda(s) in a trial of seeds trained together (``lambdas_seed3.npz``): mirrored too."""

_MIRRORS: dict[Path, str] = {}
"""Live mirror roots (local) -> the display of the location each was copied from."""
_MIRRORS_LOCK = threading.Lock()

T = TypeVar("T")


@dataclass(frozen=True)
class Location:
    """A local path (``fs`` None, ``path`` absolute or as given) or a path in a pyarrow filesystem."""

    path: str
    fs: Any = None
    display: str = ""
    """How messages name it: the path, or ``scheme://path`` without the URI's query."""

    # ------------------------------------------------------------ naming
    @property
    def is_local(self) -> bool:
        return self.fs is None

    @property
    def local(self) -> Path:
        """The local path; only for a local location."""
        if self.fs is not None:
            raise ValueError(f"{self} is not a local path")
        return Path(self.path)

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name if self.fs is not None else Path(self.path).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix

    def __truediv__(self, name: str) -> "Location":
        if self.fs is None:
            joined = str(Path(self.path) / name)
            return Location(joined, None, joined)
        return Location(f"{self.path.rstrip('/')}/{name}", self.fs, f"{self.display.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return self.display or self.path

    # ----------------------------------------------------------- queries
    def _info(self) -> Any:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        if self.fs is None:
            return Path(self.path).exists()
        return self.is_file() or self.is_dir()

    def is_file(self) -> bool:
        if self.fs is None:
            return Path(self.path).is_file()
        from pyarrow import fs as pafs

        return self._info().type == pafs.FileType.File

    def is_symlink(self) -> bool:
        """Object stores have no links."""
        return Path(self.path).is_symlink() if self.fs is None else False

    def is_dir(self) -> bool:
        """A local directory; on an object store, a prefix with something under it (or a bucket)."""
        if self.fs is None:
            return Path(self.path).is_dir()
        from pyarrow import fs as pafs

        info = self._info()
        if info.type == pafs.FileType.File:
            return False
        return info.type == pafs.FileType.Directory and (
            "/" not in self.path.strip("/") or bool(self.children())
        )

    def is_nonempty_dir(self) -> bool:
        if self.fs is None:
            path = Path(self.path)
            return path.is_dir() and any(path.iterdir())
        return self.is_dir() and bool(self.children())

    def children(self) -> list["Location"]:
        """The entries directly inside, sorted by name (none when it does not exist)."""
        if self.fs is None:
            path = Path(self.path)
            return [Location(str(p), None, str(p)) for p in sorted(path.iterdir())] if path.is_dir() else []
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return [self / PurePosixPath(info.path).name for info in sorted(infos, key=lambda i: i.path)]

    def files(self) -> list[tuple[str, "Location"]]:
        """Every file below, recursively, as (path relative to this location, location), sorted."""
        if self.fs is None:
            root = Path(self.path)
            return [(str(p.relative_to(root)), Location(str(p), None, str(p)))
                    for p in sorted(root.rglob("*")) if p.is_file()] if root.is_dir() else []
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True, allow_not_found=True))
        prefix = self.path.rstrip("/") + "/"
        out = []
        for info in sorted(infos, key=lambda i: i.path):
            if info.type == pafs.FileType.File and info.path.startswith(prefix):
                relative = info.path[len(prefix):]
                out.append((relative, Location(info.path, self.fs, f"{self.display.rstrip('/')}/{relative}")))
        return out

    # ------------------------------------------------------- read, write
    def read_bytes(self) -> bytes:
        if self.fs is None:
            return Path(self.path).read_bytes()
        if not self.is_file():
            raise FileNotFoundError(f"{self} does not exist")
        with self.fs.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def write_bytes(self, data: bytes) -> None:
        """The whole file at once (an object store: one PUT); local files as ``Path.write_bytes``."""
        if self.fs is None:
            Path(self.path).write_bytes(data)
            return
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(data)

    def makedirs(self) -> None:
        """A local directory and its parents; nothing on an object store (a prefix needs no making,
        and a marker object would be one more key in the listing)."""
        if self.fs is None:
            Path(self.path).mkdir(parents=True, exist_ok=True)


def is_uri(text: str | Path) -> bool:
    """``scheme://...`` (a Windows drive letter is no scheme)."""
    return isinstance(text, str) and "://" in text and len(urlsplit(text).scheme) > 1


def location(value: "str | Path | Location", what: str = "location") -> Location:
    """``value`` as a :class:`Location`; a URI pyarrow does not understand is one error line naming ``what``."""
    if isinstance(value, Location):
        return value
    if not is_uri(value):
        path = str(Path(value).expanduser())
        return Location(path, None, path)
    text = str(value)
    parts = urlsplit(text)
    if parts.scheme == "file":
        path = str(Path(parts.path or "/"))
        return Location(path, None, path)
    if not parts.netloc:
        raise RklBenchError(f"{what} {text}: a {parts.scheme}:// URI needs a bucket (e.g. {parts.scheme}://BUCKET/PREFIX)")
    try:
        from pyarrow import fs as pafs

        # Opening may ask the network (an S3 bucket's region when none is set): bounded too.
        fs, path = _bounded(lambda: pafs.FileSystem.from_uri(text), REACH_TIMEOUT_S)
    except TimeoutError:
        raise RklBenchError(f"{what} {_public(text)}: the object store did not answer within {REACH_TIMEOUT_S:g} s; "
                            "check the endpoint, the region (AWS_DEFAULT_REGION) and the network") from None
    except (ImportError, ValueError, TypeError) as exc:
        raise RklBenchError(f"{what} {_public(text)}: not a location pyarrow can open ({_first_line(exc)}); "
                            "give a local path or an s3://, gs:// or file:// URI") from None
    except OSError as exc:
        raise RklBenchError(f"{what} {_public(text)}: cannot open it ({_first_line(exc)}); check the URI, "
                            "the credentials (AWS_*, GOOGLE_APPLICATION_CREDENTIALS), the region and the network") from None
    return Location(path.rstrip("/") or path, fs, f"{parts.scheme}://{path.rstrip('/')}")


def native(value: "str | Path | Location") -> "Path | Location":
    """A local location as a ``Path`` (code written for paths keeps working on it), a remote one as it is."""
    loc = location(value)
    return loc.local if loc.is_local else loc


def from_fs(fs: Any, path: str) -> Location:
    """A location from a pyarrow filesystem and a path in it (what Tune's StorageContext holds)."""
    from pyarrow import fs as pafs

    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return Location(path, None, path)
    return Location(path, fs, f"{fs.type_name}://{path}")


def check_reachable(loc: Location, what: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """A remote location's bucket must exist and answer within ``timeout``; else one error line.

    Local locations are checked by the callers as before (``check_writable_dir``).
    """
    if loc.is_local:
        return
    bucket = loc.path.split("/", 1)[0]
    from pyarrow import fs as pafs

    try:
        info = _bounded(lambda: loc.fs.get_file_info(bucket), timeout)
    except TimeoutError:
        raise RklBenchError(f"{what} {loc}: the object store did not answer within {timeout:g} s; "
                            "check the endpoint (for S3: AWS_ENDPOINT_URL or ?endpoint_override=) and the network") from None
    except OSError as exc:
        raise RklBenchError(f"{what} {loc}: cannot reach the bucket {bucket} ({_first_line(exc)}); "
                            "check the endpoint and the credentials (AWS_* variables)") from None
    if info.type == pafs.FileType.NotFound:
        raise RklBenchError(f"{what} {loc}: bucket {bucket} does not exist (or these credentials cannot see it); "
                            "create it first or fix the URI")


@contextlib.contextmanager
def mirror(locations: Sequence["str | Path | Location"], what: str = "input") -> Iterator[list[Path]]:
    """Local paths for ``locations``: local ones as they are, remote ones copied (only
    :data:`MIRRORED_NAMES` and a search's figures) into a temporary directory that lives as long
    as the block. Inside it, :func:`shown` and the messages of errors name the copies by their URIs."""
    locs = [location(value, what) for value in locations]
    remote = [loc for loc in locs if not loc.is_local]
    if not remote:
        yield [loc.local for loc in locs]
        return
    tmp = Path(tempfile.mkdtemp(prefix="rkl_bench_mirror_")).resolve()  # resolved: as reports name paths
    roots: dict[Path, str] = {}
    try:
        paths = []
        for index, loc in enumerate(locs):
            if loc.is_local:
                paths.append(loc.local)
                continue
            check_reachable(loc, what)
            root = tmp / str(index) / (loc.name or "root")
            copied = 0
            for relative, source in loc.files():
                if _mirrored(relative):
                    target = root / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(source.read_bytes())
                    copied += 1
            if not copied:
                raise RklBenchError(f"{what} {loc}: nothing there (no result rows, record or archive)")
            root.mkdir(parents=True, exist_ok=True)
            roots[root] = str(loc)
            paths.append(root)
        with _MIRRORS_LOCK:
            _MIRRORS.update(roots)
        try:
            yield paths
        except RklBenchError as exc:
            raise RklBenchError(_unmirrored(str(exc), roots)) from None
    finally:
        with _MIRRORS_LOCK:
            for root in roots:
                _MIRRORS.pop(root, None)
        shutil.rmtree(tmp, ignore_errors=True)


def shown(path: "str | Path") -> str:
    """How a message or a page names a local path: the URI it was copied from when it lies in a live
    :func:`mirror` copy (``s3://bucket/results/x/trial_1/result.json``), else the path itself."""
    text = str(path)
    with _MIRRORS_LOCK:
        roots = dict(_MIRRORS)
    return _unmirrored(text, roots) if roots else text


def _unmirrored(text: str, roots: dict[Path, str]) -> str:
    """``text`` with every mirror root in it replaced by the location it was copied from (longest first)."""
    for root in sorted(roots, key=lambda r: len(str(r)), reverse=True):
        text = text.replace(str(root), roots[root])
    return text


def _mirrored(relative: str) -> bool:
    """A file :func:`mirror` copies: a result file anywhere below, or a search figure in ``figures/``."""
    parts = PurePosixPath(relative)
    if parts.name in MIRRORED_NAMES or GROUP_LAMBDAS.fullmatch(parts.name):
        return True
    return len(parts.parts) == 2 and parts.parts[0] == layout.FIGURES_DIR and parts.suffix in FIGURE_SUFFIXES


def upload_dir(source: Path, target: Location, order: Callable[[Path], Any] | None = None) -> None:
    """Copy every file of local ``source`` to ``target`` (``order``: upload sort key, e.g. a marker file last)."""
    files = sorted((p for p in source.rglob("*") if p.is_file()), key=order or (lambda p: str(p)))
    for path in files:
        (target / str(path.relative_to(source).as_posix())).write_bytes(path.read_bytes())


def _bounded(call: Callable[[], T], timeout: float) -> T:
    """``call()`` in a daemon thread, given up after ``timeout`` seconds (pyarrow retries for minutes)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    helper = threading.Thread(target=run, name="rkl-bench-storage-probe", daemon=True)
    helper.start()
    helper.join(timeout)
    if helper.is_alive():
        raise TimeoutError
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _public(uri: str) -> str:
    """A URI without its query (which may hold keys)."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
