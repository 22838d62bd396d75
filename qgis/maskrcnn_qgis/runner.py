"""Running the ``maskrcnn`` program for an algorithm: finding it, showing its progress in QGIS's
feedback, stopping it when the user cancels, and turning its one-line errors into Processing
errors. Only the standard library: the plugin needs nothing installed inside QGIS's Python."""

import os
import queue
import re
import shutil
import subprocess
import threading

from qgis.core import QgsProcessingException

SETTING = "MASKRCNN_BIN"
ENV = "MASKRCNN_BIN"

# `MASKRCNN_PROGRESS=lines` makes the program print these in place of its terminal bars.
_TILES = re.compile(r"^progress: tiles (\d+)/(\d+) objects (\d+)")
_STEP = re.compile(r"^progress: step (\d+)/(\d+)\s*(.*)$")


def find_binary():
    """The maskrcnn program: the Processing setting, else $MASKRCNN_BIN, else PATH."""
    candidates = []
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        candidates.append(ProcessingConfig.getSetting(SETTING))
    except Exception:  # noqa: BLE001 (qgis_process without the processing plugin's settings)
        pass
    candidates.append(os.environ.get(ENV))
    for candidate in candidates:
        if candidate:
            candidate = os.path.expanduser(str(candidate))
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
            raise QgsProcessingException(
                f"the maskrcnn program {candidate} (from the plugin settings or ${ENV}) is not an executable file"
            )
    found = shutil.which("maskrcnn")
    if found:
        return found
    raise QgsProcessingException(
        "the maskrcnn program was not found: put it on PATH, set $MASKRCNN_BIN, or set it under "
        "Settings > Options > Processing > Providers > Mask R-CNN"
    )


def _read_lines(stream, lines):
    for line in iter(stream.readline, ""):
        lines.put(line.rstrip("\r\n"))
    lines.put(None)


def run(args, feedback, resume_hint=None):
    """Runs ``maskrcnn ARGS``, reporting its progress to ``feedback``; returns its stderr lines.

    Cancelling stops the program; ``resume_hint`` tells the user how to continue such a run."""
    binary = find_binary()
    command = [binary] + [str(a) for a in args]
    feedback.pushCommandInfo(" ".join(_quote(a) for a in command))
    env = dict(os.environ, MASKRCNN_PROGRESS="lines")
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )
    lines = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    said = []
    cancelled = False
    while True:
        if feedback.isCanceled() and not cancelled:
            cancelled = True
            process.terminate()
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        _report(line, feedback)
        said.append(line)
    code = process.wait()
    process.stdout.close()
    if cancelled:
        message = "cancelled"
        if resume_hint:
            message += f"; {resume_hint}"
        raise QgsProcessingException(message)
    if code != 0:
        errors = [line[len("error: ") :] for line in said if line.startswith("error: ")]
        raise QgsProcessingException(errors[-1] if errors else f"maskrcnn exited with status {code}")
    return said


def _report(line, feedback):
    tiles = _TILES.match(line)
    if tiles:
        done, total, objects = (int(g) for g in tiles.groups())
        if total:
            feedback.setProgress(100.0 * done / total)
        feedback.setProgressText(f"{done}/{total} tiles, {objects} objects")
        return
    step = _STEP.match(line)
    if step:
        done, total = int(step.group(1)), int(step.group(2))
        if total:
            feedback.setProgress(100.0 * done / total)
        feedback.setProgressText(f"step {done}/{total} {step.group(3)}".strip())
        return
    if line.startswith("error: "):
        feedback.reportError(line[len("error: ") :])
    elif line.startswith("warning: "):
        feedback.pushWarning(line[len("warning: ") :])
    else:
        feedback.pushInfo(line)


def _quote(arg):
    return f'"{arg}"' if (" " in arg or not arg) else arg
