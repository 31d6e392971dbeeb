"""Writing files and folders so that a process killed at any moment never leaves a half-written one.

A file is written under a temporary name beside it, flushed to disk, then
renamed over its final name (a rename within a folder is atomic); a folder is
built under a temporary name and renamed into place when complete.
"""

import contextlib
import os
import shutil

# Keras picks the format from these endings, so the temporary name keeps them.
_KEPT_ENDINGS = (".weights.h5", ".keras")


def partial_name(path):
    """The temporary name `path` is written under: `NAME.partial.EXT` for Keras files, else `path.partial`."""
    for ending in _KEPT_ENDINGS:
        if path.endswith(ending):
            return path[:-len(ending)] + ".partial" + ending
    return path + ".partial"


def commit(temporary, path):
    """Flushes the complete file `temporary` to disk and renames it over `path`."""
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@contextlib.contextmanager
def replacing(path):
    """Yields the temporary name to write `path`'s new content to; committed if the block completes.

        with replacing(path) as temporary:
            model.save(temporary)
    """
    temporary = partial_name(path)
    yield temporary
    commit(temporary, path)


def publish_folder(partial, folder, marker):
    """Renames the complete folder `partial` to `folder`.

    If another process published the same folder first (it holds `marker`),
    keeps theirs and removes `partial`: concurrent builders of the same content
    (several training workers) need no coordination.
    """
    try:
        os.rename(partial, folder)
    except OSError:
        if not os.path.exists(os.path.join(folder, marker)):
            raise
        shutil.rmtree(partial, ignore_errors=True)
