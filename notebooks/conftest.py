"""pytest settings for running the notebooks under nbval (``make test``).

nbval >= 0.10 executes cells with ``store_history=False``. IPython decides whether a trailing
``;`` silences a cell's last value by reading the last *stored* input, so under nbval the
semicolon is ignored and plotting cells print reprs such as ``<matplotlib.legend.Legend at
0x7f...>`` that JupyterLab, papermill and nbconvert never show (nbval issue #194, IPython issue
#14162, both open). Executing with history restores the notebook behaviour; nbval does not
compare execution counts, so nothing else changes.
"""

from __future__ import annotations

from nbval.kernel import RunningKernel


def _execute_with_history(self: RunningKernel, cell_input: str,
                          allow_stdin: bool | None = None) -> str:
    return self.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin,
                           stop_on_error=False)


RunningKernel.execute_cell_input = _execute_with_history
