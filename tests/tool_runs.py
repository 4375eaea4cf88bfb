"""Helpers shared by the test files that run the tools and benchmarks as subprocesses."""
import os


def tool_env(**extra):
    """Environment of the subprocesses: one thread each (reproducible numbers), no warnings, and
    no debug switch that would turn clean errors into tracebacks."""
    result = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    result.pop('IRESNET_MMDET_DEBUG', None)
    result.update(extra)
    return result


def assert_one_line_error(result, *fragments):
    """``result`` (a finished subprocess) failed with exit status 2 and exactly one ``error:``
    line on stderr, no traceback, and that line holds every fragment."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
