"""Write output files safely: check before the work that they can be written, then write them
atomically (to a temporary file in the same directory, then rename it).

A reader (or a run killed during the write) never sees a half-written file: the target is either
the old file or the complete new one. Only the standard library is imported
(``tools/deployment/onnx_infer.py`` loads this file by its path, without torch or mmdet).
"""
import errno
import os
import os.path as osp
import tempfile


def write_atomic(path, write):
    """Call ``write(tmp_path)``, then rename the temporary file to ``path``.

    The temporary file lies beside ``path`` (so the rename is atomic) and ends in ``path``'s own
    extension (so writers that pick the format from it, e.g. ``cv2.imwrite``, work). It gets the
    permissions of a newly created file; it is removed if ``write`` fails.

    Args:
        path (str): The file to write; missing parent folders are created.
        write (callable): Called with the temporary path; writes the content there.

    Raises:
        OSError: If the folder or the file cannot be written (nothing is left behind).
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = osp.basename(path)
    handle, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.part' + osp.splitext(name)[1],
                                   dir=folder)
    os.close(handle)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates the file private (0600)
        write(tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def output_problem(path, directory=False):
    """Why ``path`` cannot be written, checked before any work (nothing is left behind), or None.

    Args:
        path (str): The output file (or folder, with ``directory=True``).
        directory (bool): Whether ``path`` is a folder to write files into.

    Returns:
        str or None: e.g. ``"'out' is a directory, not a file"`` or ``"'/ro' is on a read-only
        file system"``.
    """
    path = str(path)
    if not path:
        return 'the path is empty'
    if osp.isdir(path) and not directory:
        return f"'{path}' is a directory, not a file"
    if osp.exists(path) and directory and not osp.isdir(path):
        return f"'{path}' is a file, not a directory"
    folder = osp.abspath(path if directory else osp.dirname(osp.abspath(path)))
    while not osp.exists(folder):  # the first folder that exists: the rest can be made there
        folder = osp.dirname(folder)
    if not osp.isdir(folder):
        return f"'{folder}' is a file, so no folder can be made under it"
    return _write_problem(folder)


def _write_problem(folder):
    """Create and remove a file in ``folder`` (permissions alone miss read-only mounts for root)."""
    try:
        handle, probe = tempfile.mkstemp(prefix='.write-check-', dir=folder)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return f"'{folder}' is on a read-only file system"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"the folder '{folder}' is not writable (permission denied)"
        return f"cannot write in the folder '{folder}' ({exc.strerror or exc})"
    os.close(handle)
    os.remove(probe)
    return None


def check_output(path, option, error=ValueError, directory=False):
    """Raise ``error`` if ``path`` cannot be written (see :func:`output_problem`).

    Args:
        path (str or None): The output; None (option not given) passes.
        option (str): How the user gave it, for the message (e.g. ``'--out'``).
        error (type): The exception to raise (the tool's bad-input error, e.g. ``ToolError``).
        directory (bool): Whether ``path`` is a folder to write files into.

    Raises:
        error: ``"<option>: <problem>; choose another path"``.
    """
    if path is None:
        return
    problem = output_problem(path, directory)
    if problem:
        raise error(f'{option}: {problem}; choose another path')


def _unused_name(folder, name, target):
    """``folder/name``, or ``folder/rescued-<n>-name`` where that exists or is the target."""
    candidate, number = osp.join(folder, name), 0
    while osp.exists(candidate) or osp.abspath(candidate) == osp.abspath(target):
        number += 1
        candidate = osp.join(folder, f'rescued-{number}-{name}')
    return candidate


def write_output(path, write, error=OSError):
    """:func:`write_atomic`, and if that fails, keep the result elsewhere and say where.

    For outputs computed by a long run (metrics, tables, predictions): a folder deleted or a disk
    filled during the run must not lose the work. The fallback is the file's name in the current
    directory, else in the system's temporary directory.

    Args:
        path (str): The requested output file.
        write (callable): Called with a temporary path; writes the content there.
        error (type): The exception to raise after a failed write (the tool's bad-input error).

    Raises:
        error: ``"cannot write <path> (<reason>); the result was written to <other> instead"`` (or
            that it could not be written anywhere).
    """
    try:
        write_atomic(path, write)
        return
    except OSError as exc:
        reason = exc.strerror or str(exc)
    for folder in (os.getcwd(), tempfile.gettempdir()):
        rescue = _unused_name(folder, osp.basename(path) or 'output', path)
        try:
            write_atomic(rescue, write)
        except OSError:
            continue
        raise error(f'cannot write {path} ({reason}); the result was written to {rescue} instead')
    raise error(f'cannot write {path} ({reason}), nor a copy in the current or temporary '
                'directory')
