"""Write a file atomically: to a temporary file in the same directory, then rename it.

A reader (or a run killed during the write) never sees a half-written file: the target is either
the old file or the complete new one. Only the standard library is imported
(``tools/deployment/onnx_infer.py`` loads this file by its path, without torch or mmdet).
"""
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
