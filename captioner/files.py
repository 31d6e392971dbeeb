"""Writing files and folders so that a process killed at any moment never leaves a half-written one,
and one writer at a time.

A file is written under a temporary name beside it, flushed to disk, then
renamed over its final name (a rename within a folder is atomic); a folder is
built under a temporary name and renamed into place when complete. `exclusive`
holds an operating-system lock, which dies with its process.
"""

import contextlib
import datetime
import json
import os
import shutil
import socket

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


class LockedError(RuntimeError):
    """Another process holds the lock. `holder` is what it wrote: `{"pid", "host", "started"}` (or {})."""

    def __init__(self, path, holder):
        self.path, self.holder = path, holder
        self.who = (f"process {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')})"
                    if holder else "another process")
        super().__init__(f"{self.who} holds {path}")


def _read_holder(handle):
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def exclusive(path):
    """Holds an exclusive lock on the file `path` for the block; the file exists only while it is held.

    Fails at once with `LockedError` naming the holder when another process
    holds it. The lock is the operating system's (`flock`), released when the
    holder exits however it exits, so a killed process never blocks the next
    (its file stays, unlocked, and is taken over). The holder writes its pid,
    host and start time into the file so that the one refused can name it,
    and deletes the file when it is done; a process that locked a file
    deleted meanwhile tries again on the new one, so two never hold it at once.
    Where `flock` does not exist (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # no flock: one writer at a time is then the user's to keep
        fcntl = None
    while True:
        handle = open(path, "a+")
        if fcntl is None:
            break
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(handle)
            handle.close()
            raise LockedError(path, holder) from None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break  # the file at `path` is the one locked
        except FileNotFoundError:
            pass
        handle.close()  # its holder deleted it as this process locked it: lock the new one
    try:
        handle.seek(0)
        handle.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}, handle)
        handle.flush()
        yield handle
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # while still locked: a waiting process finds it gone and locks a new one
        handle.close()
