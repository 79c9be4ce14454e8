"""Regenerate the two screenshots of docs/debugging.md with a real headless Chromium.

* ``docs/images/profiler_trace.png``: a ``torch.profiler`` trace of one GPT-2 training step on sunrise
  (CPU and PrivateUse1 activities, after one warm-up step), in speedscope. Speedscope shows one
  thread at a time; the picture shows the sunrise stream lane ("sunrise:0 stream 0"): the minimap
  of the whole step on top, below it a stretch of the forward (``sunrise::task<aten::addmm>``,
  ``...<aten::tanh>``, ...) with the tooltip of one addmm. Speedscope is given a copy of the trace
  with that lane only.
* ``docs/images/memory_viz.png``: PyTorch's memory visualizer (the page that
  ``torch.cuda._memory_viz.trace_plot`` writes, "Active Memory Timeline") on a sunrise snapshot of
  the same model: ``torch.sunrise.memory._record_memory_history(max_entries=100000)`` from before the
  model is moved to the device until after one training step. The stack of one forward allocation
  is shown below the plot.

Run from the repository root (nothing is downloaded at run time; the page and its scripts are
served on 127.0.0.1 from a temporary directory)::

    .venv/bin/python docs/tools/screenshots.py \\
        --speedscope /tmp/shots/node_modules/speedscope \\
        --d3 /tmp/shots/d3v5/node_modules/d3 \\
        --memory-viz /tmp/shots/viz/MemoryViz.js

It needs:

* ``transformers`` in the environment, and Chromium (``--chromium``, default ``/usr/bin/chromium``).
* ``--speedscope``: the npm package ``speedscope`` (``npm install speedscope`` in a scratch
  directory; tested with 1.25.0), its folder in node_modules.
* ``--memory-viz``: ``torch/utils/viz/MemoryViz.js`` from the pytorch/pytorch repository (a
  checkout or a copy); ``.js`` files beside it (newer versions import ``./process_alloc_data.js``)
  are served too. Its ``import ... from "<CDN>/d3..."`` lines are rewritten in a served copy to
  read the ``d3`` global instead.
* ``--d3``: the npm package ``d3`` whose major version is the one MemoryViz.js imports (``d3@5``
  for versions importing ``cdn.skypack.dev/d3@5``, ``d3@7`` for those importing ``d3@7``); its
  ``dist/d3.min.js`` is loaded as a classic script.

Options: ``--out`` (default ``docs/images``), ``--width``/``--height`` (the browser window, default
1600x1000), ``--timeout`` (seconds for each browser wait, default 60), ``--threads`` (intra-op
threads, default 1: on a busy two-core machine OpenMP barriers stretch single kernels to a
scheduler quantum and the picture stops being typical), ``--keep DIR`` (also keep the trace,
the snapshot and the served pages there).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import pickle
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


# --------------------------------------------------------------------------------------------
# the model, the trace and the snapshot


def make_data(threads: int, workdir: Path) -> tuple[Path, dict]:
    """Record the memory history of a GPT-2's first (warm-up) training step on sunrise and
    snapshot it, then profile the second step."""
    import torch
    import transformers
    from torch.profiler import ProfilerActivity, profile

    import torch_sunrise  # noqa: F401  (registers the device)

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=64,
        resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
    )
    torch.manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))

    # Memory history from before the parameters reach the device, through the first (warm-up) step.
    torch.sunrise.memory._record_memory_history(max_entries=100000)
    model = transformers.GPT2LMHeadModel(cfg).to("sunrise")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = ids.to("sunrise")

    def step() -> float:
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step()
    torch.sunrise.synchronize()
    snapshot = torch.sunrise.memory._snapshot()
    torch.sunrise.memory._record_memory_history(enabled=None)

    # The profiled step: the second one.
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
        step()
        torch.sunrise.synchronize()
    trace = workdir / "trace.json"
    prof.export_chrome_trace(str(trace))
    with open(workdir / "snapshot.pickle", "wb") as f:
        pickle.dump(snapshot, f)
    return trace, snapshot


def device_lane(trace: Path) -> list[dict]:
    """The events of the busiest sunrise stream lane (with its process and thread names), for speedscope.

    Speedscope builds one profile per (pid, tid) from complete ("X") events and fails on kineto's
    string pids ("Spans", "Traces"); it shows an event's args in its name, so they are dropped.
    """
    events = json.loads(trace.read_text())["traceEvents"]
    device = [e for e in events if e.get("ph") == "X" and e.get("cat") in DEVICE_CATEGORIES]
    if not device:
        raise SystemExit(f"{trace}: no device events (categories {DEVICE_CATEGORIES})")
    lanes: dict[tuple, int] = {}
    for e in device:
        lanes[(e["pid"], e["tid"])] = lanes.get((e["pid"], e["tid"]), 0) + 1
    pid, tid = max(lanes, key=lanes.get)
    out = []
    for e in events:
        if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) == (pid, tid):
            out.append({k: e[k] for k in ("ph", "cat", "name", "pid", "tid", "ts", "dur")})
        elif e.get("ph") == "M" and e.get("pid") == pid and (
            e.get("name") == "process_name" or (e.get("name") == "thread_name" and e.get("tid") == tid)
        ):
            out.append(e)
    return out


def span(events: list[dict]) -> tuple[float, float]:
    xs = [e for e in events if e["ph"] == "X"]
    return min(e["ts"] for e in xs), max(e["ts"] + e["dur"] for e in xs)


# --------------------------------------------------------------------------------------------
# the memory visualizer page

D3_IMPORT = re.compile(r'import\s+(\*\s+as\s+\w+|\{[^}]*\})\s+from\s+"https?://[^"]*/d3(?:-[a-z]+)?@[^"]*";')


def d3_globals(js: str) -> tuple[str, int]:
    """``import * as d3 from "<cdn>/d3@5"`` -> ``const d3 = window.d3;`` and
    ``import {zoom} from "<cdn>/d3-zoom@1"`` -> ``const {zoom} = window.d3;``."""

    def sub(m: re.Match) -> str:
        what = m.group(1)
        if what.startswith("*"):
            return f"const {what.split()[-1]} = window.d3;"
        return f"const {what} = window.d3;"

    return D3_IMPORT.subn(sub, js)


def build_memory_page(snapshot: dict, memory_viz: Path, d3_pkg: Path, serve: Path) -> str:
    from torch.cuda import _memory_viz

    js = memory_viz.read_text()
    wanted = re.search(r'import\s+\*\s+as\s+d3\s+from\s+"[^"]*/d3@(\d+)', js)
    have = json.loads((d3_pkg / "package.json").read_text())["version"]
    if wanted and wanted.group(1) != have.split(".")[0]:
        raise SystemExit(f"{memory_viz} imports d3@{wanted.group(1)}, --d3 is d3@{have}: install d3@{wanted.group(1)}")
    for src in memory_viz.parent.glob("*.js"):  # MemoryViz.js and the modules beside it
        text, _ = d3_globals(src.read_text())
        if "cdn." in text and re.search(r'from\s+"https?://', text):
            raise SystemExit(f"{src}: an import from the network is left after the rewrite")
        (serve / src.name).write_text(text)
    if memory_viz.name != "MemoryViz.js":
        shutil.copy(serve / memory_viz.name, serve / "MemoryViz.js")
    shutil.copy(d3_pkg / "dist" / "d3.min.js", serve / "d3.min.js")

    html = _memory_viz.trace_plot(snapshot)  # "Active Memory Timeline"
    html, n = re.subn(r'from\s+"https?://[^"]*/MemoryViz\.js"', 'from "./MemoryViz.js"', html)
    if n != 1:
        raise SystemExit("trace_plot's page does not import MemoryViz.js as expected")
    html = html.replace('<script type="module">', '<script src="./d3.min.js"></script>\n<script type="module">', 1)
    (serve / "memory_viz.html").write_text(html)
    return "memory_viz.html"


# --------------------------------------------------------------------------------------------
# the local server and the browser


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Chromium:
    """Headless Chromium driven over the DevTools protocol on --remote-debugging-pipe
    (commands on its fd 3, answers and events on its fd 4, each message ending in NUL)."""

    def __init__(self, exe: str, width: int, height: int, profile_dir: Path, timeout: float) -> None:
        self.timeout = timeout
        self.size = (width, height)
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
            "--no-first-run", "--no-default-browser-check", "--remote-debugging-pipe",
            f"--user-data-dir={profile_dir}", f"--window-size={width},{height}", "about:blank",
        ]
        try:
            self.proc = subprocess.Popen(
                # bash, not sh: dash redirects single-digit descriptors only
                ["bash", "-c", f'exec "$0" "$@" 3<&{to_r} 4>&{from_w} {to_r}<&- {from_w}>&-', *args],
                pass_fds=(to_r, from_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(to_r)
            os.close(from_w)
        self._buf = b""
        self._id = 0
        self.session: str | None = None
        self.console: list[str] = []

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_r], [], [], left)
            if ready:
                chunk = os.read(self._from_r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, browser: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not browser:
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            if m.get("method") == "Runtime.consoleAPICalled":
                args = m["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif m.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(m["params"]["exceptionDetails"])[:500])

    def open(self, url: str) -> None:
        if self.session is None:
            target = self.send("Target.createTarget", browser=True, url="about:blank")["targetId"]
            attached = self.send("Target.attachToTarget", browser=True, targetId=target, flatten=True)
            self.session = attached["sessionId"]
            self.send("Runtime.enable")
            width, height = self.size
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        self.console.clear()
        self.send("Page.navigate", url=url)

    def eval(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}...: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")

    def wait_for(self, expression: str, what: str):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}; console: {self.console[-5:]}")

    def settle(self, seconds: float = 0.4) -> None:
        """Let the page draw (two animation frames, then a pause)."""
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        time.sleep(seconds)

    def mouse(self, kind: str, x: float, y: float, **kw) -> None:
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, **kw)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 12) -> None:
        self.mouse("mouseMoved", x0, y0)
        self.mouse("mousePressed", x0, y0, button="left", buttons=1, clickCount=1)
        for i in range(1, steps + 1):
            f = i / steps
            self.mouse("mouseMoved", x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, button="left", buttons=1)
        self.mouse("mouseReleased", x1, y1, button="left", buttons=0, clickCount=1)

    def screenshot(self, path: Path, height: int | None = None) -> None:
        params: dict = {"format": "png"}
        if height is not None:
            params["clip"] = {"x": 0, "y": 0, "width": self.size[0], "height": height, "scale": 1}
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", browser=True)
                except Exception:
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            os.close(self._to_w)
            os.close(self._from_r)


# --------------------------------------------------------------------------------------------
# the two pictures

SPEEDSCOPE_READY = "document.title.endsWith(' - speedscope') && document.querySelectorAll('canvas').length >= 3"
CANVASES = """JSON.stringify([...document.querySelectorAll('canvas')].map(c => {
  const r = c.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }))"""
ROW = 20  # speedscope's row height in CSS pixels


def speedscope_view(browser: Chromium, base: str, name: str, events: list[dict], window: tuple[float, float],
                    hover: dict, out: Path) -> None:
    """Open one lane in speedscope, zoom to the time window, hover one event, screenshot the top."""
    profile = urllib.parse.quote(f"{base}/{name}", safe="")
    browser.open(f"{base}/speedscope/index.html?{name}#profileURL={profile}")
    browser.wait_for(f"document.title === {json.dumps(name + ' - speedscope')} && {SPEEDSCOPE_READY}",
                     f"speedscope to load {name}")
    browser.settle()
    canvases = json.loads(browser.eval(CANVASES))
    _, mini_y, width, mini_h = canvases[1]  # the minimap: the whole lane
    _, chart_y, _, _ = canvases[2]  # the flame chart: the window
    t0, t1 = span(events)
    f0, f1 = (window[0] - t0) / (t1 - t0), (window[1] - t0) / (t1 - t0)
    # Zoom in at the other end first, so that dragging over the window on the minimap selects it
    # instead of panning the view.
    far = width - 5 if (f0 + f1) / 2 < 0.5 else 5
    browser.mouse("mouseWheel", far, chart_y + 200, deltaX=0, deltaY=-400, modifiers=2)
    browser.settle(0.2)
    y = mini_y + mini_h * 0.7
    browser.drag(width * f0, y, width * f1, y)
    browser.settle()
    x = (hover["ts"] + hover["dur"] / 2 - window[0]) / (window[1] - window[0]) * width
    for dx in (-2, 0):  # twice: speedscope places its tooltip by the size it had on the last move
        browser.mouse("mouseMoved", x + dx, chart_y + ROW * 1.5)  # below the axis labels: the first row
        browser.settle(0.2)
    shown = [t for t in browser.eval("document.body.innerText").splitlines() if "sunrise" in t]
    print(f"  speedscope: {' | '.join(shown)}")
    browser.screenshot(out, height=int(chart_y + ROW * 5))


def device_window(dev: list[dict], count: int = 14) -> tuple[float, float]:
    """The time window of the picture: ``count`` consecutive device events of the forward (the first
    half of the lane) with two addmms or more, the run where the device idles least (a busy
    machine leaves gaps where the Python thread was descheduled)."""
    xs = sorted((e for e in dev if e["ph"] == "X"), key=lambda e: e["ts"])
    best = None
    for i in range(max(len(xs) // 2 - count, 1)):
        run = xs[i:i + count]
        if len(run) < count or sum(e["name"].endswith("<aten::addmm>") for e in run) < 2:
            continue
        busy = sum(e["dur"] for e in run)
        whole = run[-1]["ts"] + run[-1]["dur"] - run[0]["ts"]
        if best is None or busy / whole > best[0]:
            best = (busy / whole, run[0]["ts"], run[-1]["ts"] + run[-1]["dur"])
    if best is None:
        a, b = span(dev)
        t0, t1 = a + (b - a) * 11 / 24, a + (b - a) * 13 / 24
    else:
        t0, t1 = best[1], best[2]
    pad = (t1 - t0) * 0.02
    return t0 - pad, t1 + pad


def profiler_picture(browser: Chromium, base: str, serve: Path, trace: Path, out: Path) -> None:
    dev = device_lane(trace)
    (serve / "sunrise_lane.json").write_text(json.dumps({"traceEvents": dev}))
    window = device_window(dev)
    inside = [e for e in dev if e["ph"] == "X" and window[0] <= e["ts"] and e["ts"] + e["dur"] <= window[1]]
    hover = max(inside, key=lambda e: ("addmm" in e["name"], e["dur"]))
    speedscope_view(browser, base, "sunrise_lane.json", dev, window, hover, out)


FORWARD_BLOCKS = """(() => {
  const out = [];
  for (const p of document.querySelectorAll('svg polygon')) {
    const d = p.__data__;
    if (!d || d.elem === 'summarized') continue;
    const r = p.getBoundingClientRect();
    if (r.width < 30 || r.height < 8) continue;
    let hit = null;
    for (let fy = 0.5; fy > 0.05 && !hit; fy -= 0.15)
      for (let fx = 0.5; fx < 0.95 && !hit; fx += 0.05) {
        const x = r.x + r.width * fx, y = r.y + r.height * fy;
        if (document.elementFromPoint(x, y) === p) hit = [x, y];
      }
    if (hit) out.push({x: hit[0], y: hit[1], area: r.width * r.height});
  }
  out.sort((a, b) => b.area - a.area);
  return JSON.stringify(out.slice(0, 60));
})()"""
CONTEXT = "document.querySelectorAll('pre')[0].innerText"


def memory_picture(browser: Chromium, base: str, page: str, out: Path) -> None:
    browser.open(f"{base}/{page}")
    browser.wait_for("document.querySelectorAll('svg polygon').length > 1", "the memory plot")
    browser.settle()
    # Hover the largest block whose stack comes from the model's forward (Python frames):
    # backward blocks are allocated on autograd's thread and have C++ frames only.
    chosen = None
    for cand in json.loads(browser.eval(FORWARD_BLOCKS)):
        browser.mouse("mouseMoved", cand["x"], cand["y"])
        text = browser.eval(CONTEXT)
        if "modeling_gpt2.py" in text:
            chosen = cand
            break
    if chosen is None:
        print("  no forward block with Python frames found; the stack pane stays empty")
        browser.mouse("mouseMoved", 1, 1)
    browser.settle()
    browser.screenshot(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speedscope", type=Path, required=True, help="node_modules/speedscope")
    ap.add_argument("--d3", type=Path, required=True, help="node_modules/d3 (the major MemoryViz.js imports)")
    ap.add_argument("--memory-viz", type=Path, required=True, help="torch/utils/viz/MemoryViz.js from pytorch/pytorch")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="also keep the trace, the snapshot and the served files here")
    args = ap.parse_args()
    release = args.speedscope / "dist" / "release"
    for p in (release / "index.html", args.d3 / "dist" / "d3.min.js", args.memory_viz):
        if not p.is_file():
            raise SystemExit(f"missing {p}")
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="sunrise-shots-") as tmp:
        tmp = Path(tmp)
        serve = tmp / "serve"
        shutil.copytree(release, serve / "speedscope")
        print("profiling and snapshotting a GPT-2 training step on sunrise")
        trace, snapshot = make_data(args.threads, serve)
        page = build_memory_page(snapshot, args.memory_viz, args.d3, serve)

        handler = functools.partial(QuietHandler, directory=str(serve))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: a free one
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        browser = watchdog = None
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            print(f"serving {serve} on {base}")
            browser = Chromium(args.chromium, args.width, args.height, tmp / "profile", args.timeout)
            # Each browser call waits --timeout at most; this bounds the whole session as well.
            watchdog = threading.Timer(args.timeout * 5, browser.proc.kill)
            watchdog.start()
            memory_picture(browser, base, page, args.out / "memory_viz.png")
            profiler_picture(browser, base, serve, trace, args.out / "profiler_trace.png")
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if browser is not None:
                browser.close()
            server.shutdown()
            server.server_close()
            thread.join()
        if args.keep:
            shutil.copytree(serve, args.keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("speedscope"))
    for name in ("profiler_trace.png", "memory_viz.png"):
        p = args.out / name
        print(f"{p}: {p.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    sys.exit(main())
