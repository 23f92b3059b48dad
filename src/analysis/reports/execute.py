"""Execute report notebooks in a kept kernel: the process behind each local report worker.

``python -m analysis.reports.execute`` reads one JSON job per line on stdin and answers one
JSON line per job on stdout. Each job is one cohort: papermill executes the template into a
notebook (``papermill.execute_notebook`` with this process's kernel manager), the notebook's
machine paths are replaced (:func:`strip_machine_paths`) and, when no cell raised, its HTML
is written (:func:`render_html`). The parent (:mod:`analysis.reports.runner`) keeps the
guarantees: temporary names, the moves into place, the manifest, kill on interrupt.

Why a kept kernel is safe: every cohort starts from an empty namespace
(``InteractiveShell.reset(new_session=True)``: user variables and the execution counter
go; imported modules stay, which is the point) with matplotlib's settings, figures, the
warning filters and the working folder put back to the state recorded right after the
kernel started; the notebook seeds numpy itself. A kernel serves at most
:data:`KERNEL_REUSE_MAX` cohorts and is replaced after any cohort that failed, so a
half-run notebook never hands its state on. ``tests/test_reports_run.py::
test_a_kept_kernel_gives_the_same_report_as_a_fresh_one`` checks the HTML is identical.

The kernel talks over IPC (Unix sockets in a private temporary folder) rather than TCP on
loopback: ipykernel >= 7 warns "Kernel is running over TCP without encryption" on every
start otherwise, and IPC sockets are not reachable from other machines or users.

What a cohort costs beyond its cells (bench/bench_reports.py, docs/reports.md "Speed"): the
reset runs right after the worker answers (while the parent moves the files into place),
over the shell channel alone; nbclient's client is ready once ``kernel_info`` is answered
on both channels (no 0.2 s IOPub drain: :func:`_kept_manager_class`); IPython's history
database is off (:data:`KERNEL_ARGUMENTS`); one HTML exporter serves every cohort.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analysis.outputs import pid_temporary_folder, temporary_name

#: Optional modules kneeload's own processes never import: jsonschema (imported by nbformat
#: and papermill) imports ``rfc3987_syntax`` when it is installed (JupyterLab's
#: jupyter-events brings it), and that builds Lark grammars at import, 1.1-1.5 s of every
#: process, for the "iri" string format that no notebook schema uses (jsonschema issue
#: #1428); jsonschema skips that check when the import fails.
UNUSED_SLOW_MODULES = ("rfc3987_syntax",)
#: The notebook format version papermill writes and reports are read as.
NBFORMAT_VERSION = 4
#: Cohorts one kernel serves before it is replaced by a fresh one (bounds any slow leak).
KERNEL_REUSE_MAX = 25
#: Seconds to wait for a kernel to start (papermill's default).
KERNEL_START_TIMEOUT_S = 60
#: Prefix of a kernel's socket folder in the temporary folder, followed by the pid of the
#: process that made it: a later run removes the folders of processes killed before they
#: could (:func:`analysis.outputs.pid_temporary_folder`).
KERNEL_RUNTIME_PREFIX = "kl-kernel-"
#: papermill rewrites (and validates) the whole notebook after every cell when True; the
#: report is written at its start and end either way (and every 30 s), so False saves the
#: per-cell rewrites (bench/bench_reports.py).
SAVE_EACH_CELL = False
#: Options the kernel is started with (``ipykernel_launcher`` argv, after the kernel spec's).
#: IPython's input history is off: a report kernel never reads it back, and with it on every
#: cell and every reset writes to ``~/.ipython/profile_default/history.sqlite`` (the user's
#: home, shared by every worker; bench/bench_reports.py).
KERNEL_ARGUMENTS = ("--HistoryManager.enabled=False",)
#: Run in the kernel once, after start: what every cohort is reset to.
BASELINE_CODE = """\
import os as _os, sys as _sys, warnings as _warnings
import matplotlib as _mpl
import matplotlib.pyplot as _plt
_sys.modules["analysis.reports.execute"].__dict__.setdefault("_BASELINE", {
    "rc": _mpl.rcParams.copy(), "filters": list(_warnings.filters), "cwd": _os.getcwd()})
"""
#: Run in the kernel (without a history entry) before every cohort but the first.
RESET_CODE = """\
get_ipython().reset(new_session=True)
import os as _os, sys as _sys, warnings as _warnings
import matplotlib as _mpl
import matplotlib.pyplot as _plt
_base = _sys.modules["analysis.reports.execute"]._BASELINE
_plt.close("all")
_mpl.rcParams.update(_base["rc"])
_warnings.filters[:] = _base["filters"]
_os.chdir(_base["cwd"])
del _os, _sys, _warnings, _mpl, _plt, _base
"""


class KernelSession:
    """One kernel kept across cohorts (IPC transport), reset before each."""

    def __init__(self, kernel_name: str, cwd: str) -> None:
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.km: Any = None
        self.used = 0
        self._clean = False  # reset since its last cohort (by :meth:`prepare`)
        self._runtime: str | None = None

    def start(self) -> None:
        """Start a fresh kernel and record the state each cohort starts from. The manager
        is nbclient's asynchronous one, driven on this thread's one event loop
        (``jupyter_core.utils.run_sync``, as nbclient does)."""
        from jupyter_core.utils import run_sync

        self.close()
        # a short private folder: Unix socket paths are limited to ~107 characters
        self._runtime = str(pid_temporary_folder(KERNEL_RUNTIME_PREFIX))
        self.km = _kept_manager_class()(kernel_name=self.kernel_name, transport="ipc",
                                        connection_file=str(Path(self._runtime) / "k.json"))
        run_sync(self.km.start_kernel)(cwd=self.cwd, extra_arguments=list(KERNEL_ARGUMENTS))
        self._run(f"import analysis.reports.execute\n{BASELINE_CODE}")
        self.used = 0
        self._clean = True

    def _run(self, code: str) -> None:
        """Run set-up code on a client of its own (closed after), once the kernel answers
        (``wait_for_ready``: right after a start)."""
        from jupyter_core.utils import run_sync

        client = self.km.client()
        try:
            client.start_channels()
            run_sync(client.wait_for_ready)(timeout=KERNEL_START_TIMEOUT_S)
            reply = run_sync(client.execute_interactive)(
                code, silent=True, store_history=False, timeout=KERNEL_START_TIMEOUT_S,
                output_hook=lambda _msg: None)
        finally:
            self.km.close_clients()
        _check_setup_reply(reply)

    def _run_on_shell(self, code: str) -> None:
        """Run set-up code on a kernel known to be up, over the shell channel alone.

        ``wait_for_ready`` costs at least 0.2 s whatever the kernel does (it drains IOPub
        until nothing arrives for 0.2 s, jupyter_client 8 ``_async_wait_for_ready``), and
        each cohort pays one already in nbclient's own client; set-up code prints nothing,
        and its ``execute_reply`` arrives on the shell channel once it has run, so no IOPub
        socket is needed. A shell request sent before the socket connects is queued by ZMQ.
        """
        from jupyter_core.utils import run_sync

        client = self.km.client()
        try:
            client.start_channels(shell=True, iopub=False, stdin=False, hb=False,
                                  control=False)
            msg_id = client.execute(code, silent=True, store_history=False)
            while True:
                reply = run_sync(client.get_shell_msg)(timeout=KERNEL_START_TIMEOUT_S)
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break
        finally:
            self.km.close_clients()
        _check_setup_reply(reply)

    def ready(self) -> None:
        """A kernel for the next cohort: a fresh one, or the kept one with its namespace
        emptied and its settings put back."""
        from jupyter_core.utils import run_sync

        if self.km is None or self.used >= KERNEL_REUSE_MAX or \
                not run_sync(self.km.is_alive)():
            self.start()
        elif self.used and not self._clean:
            self.reset()
        self._clean = False

    def reset(self) -> None:
        """Empty the kept kernel's namespace and put its settings back now (a kernel that
        does not answer or whose reset raised is replaced by a fresh one)."""
        try:
            self._run_on_shell(RESET_CODE)
        except Exception:  # no answer in time (queue.Empty), a reset that raised
            self.start()
        self._clean = True

    def prepare(self) -> None:
        """Reset the kept kernel for the next cohort ahead of time: the worker does it
        right after answering, while the parent moves the outputs into place and writes
        the manifest and index. A kernel due for replacement is left for :meth:`ready`."""
        from jupyter_core.utils import run_sync

        if self.km is not None and self.used and not self._clean and \
                self.used < KERNEL_REUSE_MAX and run_sync(self.km.is_alive)():
            self.reset()

    def execute(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Run one cohort's job; never raises for a failing notebook."""
        import papermill

        self.ready()
        self.used += 1
        error = None
        try:
            papermill.execute_notebook(job["template"], job["output"],
                                       parameters=job["parameters"],
                                       kernel_name=self.kernel_name, km=self.km,
                                       progress_bar=False, log_output=False,
                                       request_save_on_cell_execute=SAVE_EACH_CELL)
        except Exception as failure:  # the notebook raised: papermill saved it with the error
            error = f"{type(failure).__name__}: {failure}".strip().splitlines()[-1]
            self.start_fresh_next()
        finally:
            self.km.close_clients()  # nbclient leaves the client of a kernel it does not own
        output = Path(job["output"])
        if output.is_file():
            strip_machine_paths(output, job.get("replacements") or {})
            if error is None and job.get("html"):
                Path(job["html"]).write_text(render_html(output), encoding="utf-8")
        return {"ok": error is None, "error": error}

    def start_fresh_next(self) -> None:
        """The next cohort gets a new kernel (after a failure nothing is handed on)."""
        self.used = KERNEL_REUSE_MAX

    def close(self) -> None:
        """Shut the kernel down and remove its socket folder."""
        from jupyter_core.utils import run_sync

        if self.km is not None:
            self.km.close_clients()
            with contextlib.suppress(Exception):
                run_sync(self.km.shutdown_kernel)(now=True)
            self.km = None
        if self._runtime:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None


def _check_setup_reply(reply: Mapping[str, Any]) -> None:
    if reply["content"].get("status") != "ok":
        raise RuntimeError(f"kernel set-up failed: {reply['content'].get('evalue')}")


def _kept_manager_class() -> type:
    """nbclient's kernel manager, recording the clients it hands out so that the ones a run
    leaves open can be closed (nbclient keeps the client of a kernel it does not own)."""
    import queue

    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    class ReadyOnceClient(AsyncKernelClient):  # type: ignore[misc]
        async def wait_for_ready(self, timeout: float | None = None) -> None:
            """Ready when the kernel answers ``kernel_info`` on the shell channel and its
            IOPub broadcast of that request reaches this client (the subscription is
            live), as jupyter_client's ``_async_wait_for_ready``, without its final drain
            of IOPub until 0.2 s pass in silence: that drain costs 0.2 s per cohort, and
            nbclient reads only the IOPub messages whose parent is its own request."""
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                msg_id = self.kernel_info()
                with contextlib.suppress(queue.Empty):
                    while True:  # this request's reply (a late one of an earlier is skipped)
                        reply = await self.get_shell_msg(timeout=1)
                        if reply["parent_header"].get("msg_id") == msg_id:
                            break
                    while True:  # IOPub is connected once one of this request's arrives
                        msg = await self.iopub_channel.get_msg(timeout=0.2)
                        if msg["parent_header"].get("msg_id") == msg_id:
                            self._handle_kernel_info_reply(reply)
                            return
                if not await self.is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if deadline is not None and time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    class KeptKernelManager(AsyncKernelManager):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.client_factory = ReadyOnceClient

        def client(self, **kwargs: Any) -> Any:
            client = super().client(**kwargs)
            self.__dict__.setdefault("_opened", []).append(client)
            return client

        def close_clients(self) -> None:
            for client in self.__dict__.pop("_opened", []):
                with contextlib.suppress(Exception):
                    client.stop_channels()

    return KeptKernelManager


def strip_machine_paths(notebook_path: Path, replacements: Mapping[str, str]) -> None:
    """Rewrite a saved notebook so that it names no absolute path of this machine.

    Every occurrence of a key of ``replacements`` (the processed folder, the reports folder,
    the template, the temporary file names, the Python environment), in the parameters
    papermill injected, its metadata and every output, becomes its value (a relative path or
    a bare name); longer paths are replaced first. The file is rewritten atomically.
    """
    text = notebook_path.read_text(encoding="utf-8")
    for path in sorted((p for p in replacements if p and Path(p).is_absolute()), key=len,
                       reverse=True):
        needle = json.dumps(path)[1:-1]  # the path as it is spelled inside JSON strings
        text = text.replace(needle, json.dumps(replacements[path])[1:-1])
    tmp = notebook_path.with_name(temporary_name(notebook_path.name))
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(notebook_path)
    finally:
        tmp.unlink(missing_ok=True)


def render_html(notebook_path: str | Path) -> str:
    """HTML of an executed notebook without code cells (``nbconvert --no-input``)."""
    import nbformat

    with _EXPORTER_LOCK:
        body, _ = _html_exporter().from_notebook_node(
            nbformat.read(str(notebook_path), as_version=NBFORMAT_VERSION))
    return body


_EXPORTER_LOCK = threading.Lock()  # an exporter registers filters on itself per export


@functools.cache
def _html_exporter() -> Any:
    """One exporter per process: its Jinja templates are compiled once (about 0.15 s of
    each export otherwise; a report worker exports every cohort it runs)."""
    from nbconvert import HTMLExporter

    return HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                        exclude_output_prompt=True)


def block_unused_slow_modules() -> None:
    """Make :data:`UNUSED_SLOW_MODULES` unimportable in this process (a module already
    imported is left alone). Called first by kneeload's own processes that import papermill
    or nbformat: the report worker (:func:`serve`) and the ``kneeload report`` command; never
    on import of the package, so a user's kernel keeps every format check it has."""
    for name in UNUSED_SLOW_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def serve(kernel_name: str, cwd: str) -> None:
    """The worker loop: one JSON job per stdin line, one JSON answer per stdout line."""
    block_unused_slow_modules()
    session = KernelSession(kernel_name, cwd)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the protocol stream
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                answer = session.execute(json.loads(line))
            except Exception as error:  # kernel would not start, disk full, ...
                session.start_fresh_next()
                answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
            with contextlib.suppress(Exception):  # ready() tries again, or starts afresh
                session.prepare()
    finally:
        session.close()


if __name__ == "__main__":  # pragma: no cover - the worker process
    serve(sys.argv[1], sys.argv[2])
