"""Search storage that may be a local folder or a bucket (s3://, gs://, ...), as Ray Tune's `storage_path` takes it.

A bucket holds what a driver on a fresh machine needs to continue a search: Tune's experiment state and
checkpoints, and beside them `NAME-search.yaml`, the search's own settings. An S3-compatible server other
than AWS is reached the way AWS's tools reach it: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), or a
`?endpoint_override=http://host:port` query on the URI (pyarrow's form), which `join` keeps.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from fer_core import runs

SETTINGS_SUFFIX = "-search.yaml"
# Passed to trial workers, whose raylets may have started without them. Credentials are not: nodes get
# theirs from their own environment or instance role, and a runtime_env is visible to the whole cluster.
ENDPOINT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


def is_remote(location: str) -> bool:
    return "://" in location


def join(base: str, *parts: str) -> str:
    """base/part/...; on a URI the parts go into the path, before any ?query (e.g. endpoint_override)."""
    if not is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    url = urlsplit(base)
    return urlunsplit(url._replace(path="/".join([url.path.rstrip("/"), *parts])))


def _filesystem(uri: str):
    import pyarrow.fs

    if not is_remote(uri):  # from_uri takes absolute paths only; a user's --storage may be relative
        return pyarrow.fs.LocalFileSystem(), str(Path(uri).resolve())
    return pyarrow.fs.FileSystem.from_uri(uri)


def with_suffix(uri: str, suffix: str) -> str:
    """uri with `suffix` added to its last path part, before any ?query: a file beside a folder."""
    base, sep, query = uri.partition("?")
    return base.rstrip("/") + suffix + sep + query


def write_text(uri: str, text: str) -> None:
    fs, path = _filesystem(uri)
    if not is_remote(uri):
        fs.create_dir(str(Path(path).parent), recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(uri: str) -> str | None:
    """The file's text, or None where it does not exist."""
    import pyarrow.fs

    fs, path = _filesystem(uri)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as src:
        return src.read().decode()


def settings_uri(storage: str, experiment: str) -> str:
    """Where a search on remote storage keeps its search.yaml, beside its Tune experiment."""
    return with_suffix(join(storage, experiment), SETTINGS_SUFFIX)


def refuse_existing_experiment(storage: str, name: str, exist_ok: bool) -> None:
    """A new search must not write over a Ray experiment already at storage/name."""
    path = join(storage, name)
    if is_remote(path):
        taken = not exist_ok and read_text(settings_uri(storage, name)) is not None
    else:
        taken = Path(path).exists() and any(Path(path).iterdir())
    if taken:
        raise FileExistsError(f"{path} already holds a Ray experiment; continue it with `fertune search "
                              f"--name {name} --resume` or choose another --name")


def fetch_saved_settings(project: Path, name: str | None, storage: str | None) -> None:
    """A resume on a machine without the search folder: rebuild it from the search.yaml kept in --storage."""
    folder = project / (name or "")
    if not name or (folder / runs.SEARCH).is_file() or not (storage and is_remote(storage)):
        return
    text = read_text(settings_uri(storage, name))
    if text is None:
        raise FileNotFoundError(f"{settings_uri(storage, name)} does not exist: no search named "
                                f"{name} ran with --storage {storage}")
    folder.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(folder / runs.SEARCH, text)
    print(f"search settings restored from {storage} into {folder}")
