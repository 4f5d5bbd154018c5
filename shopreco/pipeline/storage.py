"""Run files (.npz) through Django's storage API, so workers on other machines can join.

``SHOPRECO["SNAPSHOT_STORAGE"]`` picks the storage: ``None`` for ``default_storage``, an
alias of ``settings.STORAGES`` or a dotted path to a storage class (any django-storages
backend such as S3 works). Files live under ``SNAPSHOT_PREFIX/run-<id>/``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage, storages
from django.utils.module_loading import import_string

from shopreco.conf import reco_settings

log = logging.getLogger("shopreco.pipeline")

_cache: OrderedDict[str, Any] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 4


def get_storage() -> Storage:
    choice = reco_settings.SNAPSHOT_STORAGE
    if not choice:
        return default_storage
    if isinstance(choice, str) and "." not in choice:
        return storages[choice]
    cls = import_string(choice) if isinstance(choice, str) else choice
    return cls()


def run_dir(run_id: int, prefix: str | None = None) -> str:
    prefix = prefix or str(reco_settings.SNAPSHOT_PREFIX)
    return f"{prefix.rstrip('/')}/run-{run_id}"


def path(run_id: int, name: str, prefix: str | None = None) -> str:
    return f"{run_dir(run_id, prefix)}/{name}"


def save_bytes(name: str, data: bytes) -> str:
    """Write ``name`` (replacing an earlier copy, so retried tasks stay idempotent)."""
    storage = get_storage()
    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, ContentFile(data))
    with _cache_lock:
        _cache.pop(saved, None)
    return saved


def read_bytes(name: str) -> bytes:
    with get_storage().open(name, "rb") as fh:
        return fh.read()


def cached(name: str, loader) -> Any:
    """Parse a run file once per process (block and batch tasks of one run share it)."""
    with _cache_lock:
        if name in _cache:
            _cache.move_to_end(name)
            return _cache[name]
    return remember(name, loader(read_bytes(name)))


def remember(name: str, value: Any) -> Any:
    """Put the parsed form of a file this process just wrote into the cache, so that the
    process reads back the object it holds instead of a second copy of the file."""
    with _cache_lock:
        _cache[name] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def csr_to_bytes(M: sp.csr_matrix, **extra: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, data=M.data, indices=M.indices, indptr=M.indptr,
                        shape=np.array(M.shape, dtype=np.int64), **extra)
    return buf.getvalue()


def csr_from_bytes(data: bytes) -> sp.csr_matrix:
    import io

    z = np.load(io.BytesIO(data), allow_pickle=False)
    M = sp.csr_matrix((z["data"], z["indices"], z["indptr"]),
                      shape=tuple(int(x) for x in z["shape"]))
    return M


def arrays_to_bytes(compress: bool = True, **arrays: np.ndarray) -> bytes:
    """``.npz`` bytes; ``compress=False`` for large dense float arrays, which barely
    compress and would cost seconds to deflate."""
    import io

    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def arrays_from_bytes(data: bytes) -> dict[str, np.ndarray]:
    import io

    z = np.load(io.BytesIO(data), allow_pickle=False)
    return {k: z[k] for k in z.files}


def delete_files(names: list[str]) -> None:
    storage = get_storage()
    for name in names:
        try:
            if storage.exists(name):
                storage.delete(name)
        except Exception:  # pragma: no cover - a missing file is not an error here
            log.warning("could not delete %s", name, exc_info=True)
        with _cache_lock:
            _cache.pop(name, None)


def delete_run_files(run_id: int, keep: tuple[str, ...] = (), prefix: str | None = None) -> None:
    """Remove a run's files (all of them, or all but ``keep``), and its folder once empty."""
    storage = get_storage()
    try:
        _dirs, files = storage.listdir(run_dir(run_id, prefix))
    except (FileNotFoundError, NotImplementedError, OSError):
        return
    delete_files([path(run_id, f, prefix) for f in files if f not in keep])
    if not any(f in keep for f in files):
        _remove_empty_folder(storage, run_dir(run_id, prefix))


def _remove_empty_folder(storage: Storage, name: str) -> None:
    """Folders are a local filesystem's matter (object stores have none): remove the run's
    own folder when nothing is left in it, so pruned runs leave no empty folders behind."""
    try:
        local = storage.path(name)
    except NotImplementedError:
        return
    try:
        os.rmdir(local)
    except OSError:  # not empty (a file written meanwhile) or already gone
        pass
